"""Scrape a kcored /metrics URL and parse it with PyPI's prometheus-client parsers.

    parse_metrics.py URL [prometheus|openmetrics]

Asks for the Prometheus text format (the default) or OpenMetrics (Accept header), parses
the answer with prometheus_client.parser or prometheus_client.openmetrics.parser (either
raises on text that breaks its format), and prints JSON: the content type and, for each
family, its type and samples as [name, labels, value].
"""
import json
import sys
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as prom_parse

url = sys.argv[1]
fmt = sys.argv[2] if len(sys.argv) > 2 else "prometheus"
accept = "application/openmetrics-text; version=1.0.0" if fmt == "openmetrics" else "text/plain"
req = urllib.request.Request(url, headers={"Accept": accept})
with urllib.request.urlopen(req, timeout=20) as r:
    ctype = r.headers.get("Content-Type", "")
    text = r.read().decode("utf-8")
parse = om_parse if fmt == "openmetrics" else prom_parse
families = {}
for fam in parse(text):
    families[fam.name] = {
        "type": fam.type,
        "samples": [[s.name, dict(s.labels), s.value] for s in fam.samples],
    }
print(json.dumps({"content_type": ctype, "families": families}))
