"""Readies Backroom's demo shop for bench/checkout.sh, through the API as staff would.

    python3 checkout_setup.py BASE_URL STAFF_TOKEN VARIANTS HOT_STOCK CARTS OUT_DIR

Takes the first VARIANTS variants of the admin product list and receives a
million units of each, so that no ordinary line ever runs out; sets the next variant's stock
to exactly HOT_STOCK units (the hot product); starts CARTS empty carts for the add-to-cart
run. Writes OUT_DIR/variants.txt (one id a line), OUT_DIR/hot.txt (the hot variant's id) and
OUT_DIR/carts.txt (a cart and the variant it gets, a line).
"""

import http.client
import json
import sys
import urllib.parse

base, token, wanted, hot_stock, carts, out = sys.argv[1:7]
wanted, hot_stock, carts = int(wanted), int(hot_stock), int(carts)
url = urllib.parse.urlsplit(base)
# One keep-alive connection: a few thousand calls take a second or two.
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)


def call(method, path, body=None, staff=False, expect=(200, 201)):
    headers = {"Content-Type": "application/json"}
    if staff:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    answer = conn.getresponse()
    data = answer.read()
    if answer.status not in expect:
        sys.exit(f"{method} {path} answered {answer.status}: {data[:500]!r}")
    return json.loads(data) if data else None


variants = []
after = None
while len(variants) < wanted + 1:
    page = call("GET", "/api/v1/admin/products?limit=100" + (f"&after={after}" if after else ""), staff=True)
    for product in page["data"]:
        variants += [v["id"] for v in product["variants"]]
    after = page.get("next_cursor")
    if not after:
        break
if len(variants) < wanted + 1:
    sys.exit(f"the catalog has {len(variants)} variants; {wanted + 1} are needed")
ordinary, hot = variants[:wanted], variants[wanted]

for variant in ordinary:
    call("POST", f"/api/v1/admin/variants/{variant}/inventory/movements",
         {"quantity": 1_000_000, "kind": "received", "reason": "bench"}, staff=True)
# The hot product: whatever the demo gave it, exactly HOT_STOCK units now.
on_hand = sum(level["on_hand"] for level in call("GET", f"/api/v1/admin/variants/{hot}/inventory", staff=True)["levels"])
if on_hand != hot_stock:
    call("POST", f"/api/v1/admin/variants/{hot}/inventory/movements",
         {"quantity": hot_stock - on_hand, "kind": "adjusted", "reason": "bench: the hot product"}, staff=True)
available = call("GET", f"/api/v1/admin/variants/{hot}/inventory", staff=True)["available"]
if available != hot_stock:
    sys.exit(f"the hot variant has {available} units available, not {hot_stock}")

with open(f"{out}/variants.txt", "w") as f:
    f.write("\n".join(ordinary) + "\n")
with open(f"{out}/hot.txt", "w") as f:
    f.write(hot + "\n")
with open(f"{out}/carts.txt", "w") as f:
    for n in range(carts):
        cart = call("POST", "/api/v1/store/carts", {})["id"]
        f.write(f"{cart} {ordinary[n % len(ordinary)]}\n")
