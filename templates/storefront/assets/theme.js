// Enhancements only: every page works without this file.
(() => {
  "use strict";
  // Sorting and filtering apply as soon as a choice changes.
  for (const form of document.querySelectorAll("form.filters")) {
    form.addEventListener("change", () => form.requestSubmit());
  }
  // The chosen variant's price and stock are shown beside the product.
  const form = document.querySelector("form.add[data-variants]");
  const select = form && form.querySelector("select[name=variant_id]");
  if (!select) return;
  const variants = JSON.parse(form.dataset.variants);
  const price = document.getElementById("variant-price");
  const stock = document.getElementById("variant-stock");
  const button = form.querySelector("button[type=submit]");
  select.addEventListener("change", () => {
    const chosen = variants.find((v) => v.id === select.value);
    if (!chosen) return;
    price.textContent = chosen.price || "Not sold here";
    stock.textContent = chosen.availability_text;
    stock.className = "stock " + chosen.availability;
    button.disabled = !chosen.available;
    button.textContent = chosen.available ? "Add to cart" : "Sold out";
  });
})();
