"""Validates sitemap files against the sitemaps.org schemas: an index against siteindex.xsd,
a set of addresses against sitemap.xsd (sitemaps.org's own, from the npm `sitemap` package)
with Google's image extension. Prints each file's errors; exits 1 when there are any.

    python validate_sitemaps.py SITEMAP_XSD FILE...
"""
import os
import sys

from lxml import etree

HERE = os.path.dirname(os.path.abspath(__file__))
SITEMAP_XSD, FILES = sys.argv[1], sys.argv[2:]

wrapper = f"""<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <xsd:import namespace="http://www.sitemaps.org/schemas/sitemap/0.9" schemaLocation="file://{SITEMAP_XSD}"/>
  <xsd:import namespace="http://www.google.com/schemas/sitemap-image/1.1" schemaLocation="file://{HERE}/sitemap-image.xsd"/>
</xsd:schema>"""
urlset = etree.XMLSchema(etree.fromstring(wrapper.encode()))
index = etree.XMLSchema(etree.parse(os.path.join(HERE, "siteindex.xsd")))

failed = False
for name in FILES:
    document = etree.parse(name)
    schema = index if etree.QName(document.getroot()).localname == "sitemapindex" else urlset
    if not schema.validate(document):
        failed = True
        for error in schema.error_log:
            print(f"{name}:{error.line}: {error.message}")
sys.exit(1 if failed else 0)
