"""The console's page in a real browser: its weight and time to first render, served by a node,
against the same bytes loaded from a file in the same run (the browser's own rendering, without
the node). argv: the page's URL, rounds."""
import sys
import tempfile
import urllib.request

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

url, rounds = sys.argv[1], int(sys.argv[2])
o = webdriver.ChromeOptions()
for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1400"]:
    o.add_argument(arg)
d = webdriver.Chrome(options=o)
d.set_page_load_timeout(30)
saved = tempfile.NamedTemporaryFile(suffix=".html", delete=False)
saved.write(urllib.request.urlopen(url, timeout=30).read())
saved.close()


def first_paint(address):
    d.get("about:blank")
    d.get(address)
    WebDriverWait(d, 10).until(lambda d: d.execute_script("return performance.getEntriesByName('first-contentful-paint').length") > 0)
    return d.execute_script("return performance.getEntriesByName('first-contentful-paint')[0].startTime"), \
        d.execute_script("return performance.getEntriesByType('navigation')[0].transferSize")


try:
    for r in range(rounds):
        served, size = first_paint(url)
        local, _ = first_paint("file://" + saved.name)
        print("round %d: served %d bytes, first contentful paint %.0f ms; from a file %.0f ms; ratio %.2f"
              % (r + 1, size, served, local, served / local))
finally:
    d.quit()
