"""Loads the catalog benchmark's products into PocketBase: a `products` collection anyone may
list and view, one record per product with its variants as JSON, from the same CSV that
Backroom imports. Prints the record ids, one a line.

    python3 bench/pocketbase_load.py http://127.0.0.1:PORT SUPERUSER_TOKEN catalog.csv > ids.txt
"""

import csv
import json
import sys
import urllib.request


def call(base, token, method, path, body):
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", "Authorization": token},
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.load(answer)


def products(path):
    by_handle = {}
    with open(path, newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            product = by_handle.get(row["handle"])
            if product is None:
                product = by_handle[row["handle"]] = {
                    "handle": row["handle"],
                    "title": row["title"],
                    "description": row["description"],
                    "vendor": row["vendor"],
                    "status": row["status"],
                    "tags": [t.strip() for t in row["tags"].split(",") if t.strip()],
                    "category": row["categories"],
                    "variants": [],
                }
            prices = {}
            for column, value in row.items():
                if column.startswith("price_") and value:
                    prices[column[len("price_"):]] = int(value)
            product["variants"].append(
                {
                    "sku": row["sku"],
                    "options": {row["option1_name"] or "Size": row["option1_value"], "Colour": row["option2_value"]},
                    "prices": prices,
                    "inventory": int(row["inventory"] or 0),
                }
            )
    return list(by_handle.values())


def main():
    base, token, path = sys.argv[1], sys.argv[2], sys.argv[3]
    call(base, token, "PATCH", "/api/settings", {"batch": {"enabled": True, "maxRequests": 500, "timeout": 60}})
    call(
        base,
        token,
        "POST",
        "/api/collections",
        {
            "name": "products",
            "type": "base",
            "listRule": "",
            "viewRule": "",
            "fields": [
                {"name": "handle", "type": "text", "required": True},
                {"name": "title", "type": "text"},
                {"name": "description", "type": "text"},
                {"name": "vendor", "type": "text"},
                {"name": "status", "type": "text"},
                {"name": "category", "type": "text"},
                {"name": "tags", "type": "json"},
                {"name": "variants", "type": "json", "maxSize": 100000},
            ],
            "indexes": [
                "CREATE UNIQUE INDEX idx_products_handle ON products (handle)",
                "CREATE INDEX idx_products_category ON products (category)",
            ],
        },
    )
    items = products(path)
    ids = []
    for start in range(0, len(items), 500):
        batch = items[start : start + 500]
        answers = call(
            base,
            token,
            "POST",
            "/api/batch",
            {"requests": [{"method": "POST", "url": "/api/collections/products/records", "body": p} for p in batch]},
        )
        ids.extend(answer["body"]["id"] for answer in answers)
    print("\n".join(ids))


if __name__ == "__main__":
    main()
