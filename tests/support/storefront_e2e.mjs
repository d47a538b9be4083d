// Buys something in the storefront with headless Chromium, as a shopper would: the home
// page, a category, a product and one of its variants, the cart, checkout with the test
// gateway's card, the confirmation. Screenshots of each page go to the folder given.
//
//   NODE_TOOLS=folder-with-node_modules node storefront_e2e.mjs BASE_URL SCREENSHOT_FOLDER
//
// Prints {"number": ...} (the order's number) on success; exits non-zero on any failure.
import { createRequire } from "node:module";

const require = createRequire(`${process.env.NODE_TOOLS || process.cwd()}/`);
const { chromium } = require("playwright-core");

const [base, shots] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
});
const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("pageerror", (error) => errors.push(String(error)));
  page.on("console", (message) => message.type() === "error" && errors.push(message.text()));
  const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });

  await page.goto(`${base}/`);
  await shot("home");
  await page.click("nav.main-menu a[href='/categories/clothing']");
  await page.waitForURL("**/categories/clothing");
  await shot("category");

  await page.locator("ul.grid li.card:not(:has(.stock.out)) a").first().click();
  await page.waitForURL("**/products/**");
  const select = page.locator("select#variant");
  if ((await select.count()) > 0) {
    const values = await select.locator("option:not([disabled])").evaluateAll((options) => options.map((o) => o.value));
    await select.selectOption(values[values.length - 1]);
    // The theme's script shows the chosen variant's price.
    const chosen = await select.locator("option:checked").textContent();
    const price = (await page.textContent("#variant-price")).trim();
    if (!chosen.includes(price)) throw new Error(`the price shown (${price}) is not the chosen variant's (${chosen})`);
  }
  await shot("product");
  await page.click("form.add button[type=submit]");
  await page.waitForURL("**/cart");
  await shot("cart");

  await page.click("a[href='/checkout']");
  await page.waitForURL("**/checkout");
  await page.fill("#email", "e2e@example.com");
  await page.fill("#first_name", "Ana");
  await page.fill("#last_name", "Silva");
  await page.fill("#line1", "1 Rue de Rivoli");
  await page.fill("#city", "Paris");
  await page.fill("#postcode", "75001");
  await page.selectOption("#country", "FR");
  await page.click("button[value=update]");
  await page.waitForSelector("input[name=shipping_method_id]");
  await page.locator("input[name=shipping_method_id]").first().check();
  await page.check("input[name=provider][value=test]");
  await page.fill("#card_number", "4242 4242 4242 4242");
  await shot("checkout");
  await page.click("button[value=place]");
  await page.waitForURL("**/checkout/complete");
  await shot("confirmation");
  const status = await page.textContent("main [role=status]");
  const number = /#(\d+)/.exec(status)?.[1];
  if (!number) throw new Error(`no order number on the confirmation page: ${status}`);
  if (errors.length > 0) throw new Error(`the browser reported errors: ${errors.join("; ")}`);
  console.log(JSON.stringify({ number: Number(number) }));
} finally {
  await browser.close();
}
