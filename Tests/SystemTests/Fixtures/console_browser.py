"""Drives the console in a real browser (Debian's chromium, through selenium and chromedriver).

argv: the gateways of nodes a, b and c; then, optionally, a directory for screenshots.
$DECOS_OPERATOR_TOKEN: node a's operator token, typed into the page for the buttons that need it.
Prints one `name value` line per finding for BrowserConsoleTests to check."""
import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

a, b, c = sys.argv[1:4]
shots = sys.argv[4] if len(sys.argv) > 4 else ""
token = os.environ["DECOS_OPERATOR_TOKEN"]


def browser(javascript=True):
    o = webdriver.ChromeOptions()
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1400"]:
        o.add_argument(arg)
    if not javascript:
        o.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    d = webdriver.Chrome(options=o)
    d.set_page_load_timeout(30)
    return d


def state(d, path):
    return d.find_element(By.CSS_SELECTOR, '[data-path="%s"] .state' % path).text


def send_form(d, path, body_text):
    """Opens the "send a verb" form of the block for `path`, picks Update, types the body, sends it."""
    block = d.find_element(By.CSS_SELECTOR, '[data-path="%s"]' % path)
    block.find_element(By.CSS_SELECTOR, "details.send > summary").click()
    Select(block.find_element(By.NAME, "verb")).select_by_value("Update")
    body = block.find_element(By.NAME, "body")
    body.clear()
    body.send_keys(body_text)
    block.find_element(By.CSS_SELECTOR, "form.send button").click()
    return block


def counter(base):
    with urllib.request.urlopen(base + "/counter", timeout=10) as r:
        text = r.read().decode()
    return text.split("<Value>")[1].split("<")[0]


d = browser()
try:
    d.get(a + "/")
    WebDriverWait(d, 10).until(lambda d: d.find_element(By.ID, "live").text == "live")
    rows = d.find_elements(By.CSS_SELECTOR, "#nodes tr td:first-child")
    print("nodes", ",".join(sorted(r.text for r in rows)))
    paint = d.execute_script("return performance.getEntriesByName('first-contentful-paint')[0].startTime")
    print("first-contentful-paint-ms", round(paint))
    print("page-bytes", d.execute_script("return performance.getEntriesByType('navigation')[0].transferSize"))
    if shots:
        d.save_screenshot(shots + "/console.png")

    # An Update made elsewhere: through node c's gateway, to node b's counter.
    envelope = ('<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing">'
                '<e:Header><a:Action>urn:decos:verb:Update</a:Action></e:Header>'
                '<e:Body><Increment><By>7</By></Increment></e:Body></e:Envelope>')
    request = urllib.request.Request(c + "/@b/counter", data=envelope.encode(), headers={"Content-Type": "application/soap+xml"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 200
    updated = time.monotonic()
    WebDriverWait(d, 5, poll_frequency=0.01).until(lambda d: state(d, "/@b/counter").split()[-1] == "7")
    print("live-update-seconds", round(time.monotonic() - updated, 3))

    # A verb sent from the form on node c's counter: the reply under it, the state changed.
    block = send_form(d, "/@c/counter", "<Increment><By>5</By></Increment>")
    WebDriverWait(d, 5).until(lambda d: "UpdateResponse" in block.find_element(By.CSS_SELECTOR, "output.result").text)
    WebDriverWait(d, 5).until(lambda d: state(d, "/@c/counter").split()[-1] == "5")
    print("form-state", counter(c))
    if shots:
        d.execute_script("arguments[0].scrollIntoView()", block)
        d.save_screenshot(shots + "/console-form.png")

    # Node a's process: its last line of output, and its Restart button.
    processes = '[data-path="/@a/os/processes"] .state'
    WebDriverWait(d, 10).until(lambda d: "tick" in d.find_element(By.CSS_SELECTOR, processes).text)
    print("process-output", "tick")
    # Restart changes the node: it needs the operator token, typed in the page's header.
    d.find_element(By.ID, "token").send_keys(token)
    # The block is fetched again at each line the process writes; its buttons stay the same
    # elements (CI once saw a button replaced before each click landed, for 10 s on a loaded machine).
    # The button found before a fetch is the one clicked after it (a replaced one would raise
    # StaleElementReferenceException here).
    block = d.find_element(By.CSS_SELECTOR, processes)
    fetched = lambda: int(block.get_attribute("data-fetched") or 0)
    before = fetched()
    button = block.find_element(By.CSS_SELECTOR, "form.process button")
    WebDriverWait(d, 10).until(lambda d: fetched() > before)
    button.click()
    restarts = lambda: urllib.request.urlopen(a + "/os/processes", timeout=10).read().decode().split("<Restarts>")[1].split("<")[0]
    WebDriverWait(d, 10).until(lambda d: restarts() == "1")
    print("process-restarts", restarts())
    if shots:
        d.execute_script("arguments[0].scrollIntoView()", d.find_element(By.CSS_SELECTOR, '[data-path="/@a/os/processes"]'))
        d.save_screenshot(shots + "/console-processes.png")
finally:
    d.quit()

# Without JavaScript: the same page, readable, and the form posts to a page of its own.
d = browser(javascript=False)
try:
    d.get(a + "/")
    rows = d.find_elements(By.CSS_SELECTOR, "#nodes tr td:first-child")
    print("nojs-nodes", ",".join(sorted(r.text for r in rows)))
    send_form(d, "/@a/counter", "<Increment><By>2</By></Increment>")
    WebDriverWait(d, 10).until(lambda d: "UpdateResponse" in d.page_source)  # the reply is a page of its own
    print("nojs-form-state", counter(a))
finally:
    d.quit()

# Last, as it ends a node: Power off on node c's section, confirmed in the browser's dialog.
d = browser()
try:
    d.get(a + "/")
    d.find_element(By.ID, "token").send_keys(token)
    d.find_element(By.CSS_SELECTOR, "#node-c form.power:last-of-type button").click()
    WebDriverWait(d, 5).until(lambda d: d.switch_to.alert).accept()
    print("poweroff", "sent")
finally:
    d.quit()
