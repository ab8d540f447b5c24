"""The web console in a real headless browser (Debian's chromium through chromedriver, driven by
selenium from PyPI; tests/compat/console/prepare installs them). A broker with a topic of 3
partitions holding 10 / 20 / 30 records and a group that committed 5 on partition 0. The test
opens the page and checks that every view loads and shows the numbers the Kafka clients report:
the cluster id and broker count, the topic's partition count, each partition's high watermark,
the group's state and lag, and the record browser's records (text, JSON and hex views). Live
refresh picks up records produced while the page is open.

Skips (exit 77, ctest's skip code, with a message) when chromium, chromedriver or selenium is not installed.

    /usr/bin/python3 test_browser.py --io uring
"""
import argparse
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
sys.path.insert(0, os.path.join(HERE, "pylib"))
from laminar_harness import Broker, free_port  # noqa: E402
from compat_util import check  # noqa: E402


def skip(why):
    print("compat_console_browser: SKIPPED: %s (run scripts/prepare-compat)" % why)
    sys.exit(77)  # ctest's SKIP_RETURN_CODE


try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:
    skip("selenium is not installed")

import confluent_kafka as ck  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

COUNTS = [10, 20, 30]


def browser():
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        skip("chromium or chromedriver is not installed")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1000"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(driver), options=opts)


def text_of(d, css):
    return d.find_element(By.CSS_SELECTOR, css).text


def wait_for(d, css, timeout=20):
    WebDriverWait(d, timeout).until(lambda x: x.find_elements(By.CSS_SELECTOR, css))
    return d.find_element(By.CSS_SELECTOR, css)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    d = browser()
    port = free_port()
    t0 = time.monotonic()
    try:
        with Broker(io=args.io, shards=2, config={"laminar.http.listener": "127.0.0.1:%d" % port,
                                                  "auto.create.topics.enable": "false"}) as b:
            try:
                run(d, b, port)
            except Exception:
                sys.stderr.write(b.log_text()[-3000:])
                raise
    finally:
        d.quit()
    print("compat_console_browser: ok in %.1f s" % (time.monotonic() - t0))


def run(d, b, port):
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in a.create_topics([NewTopic("shop", num_partitions=3, replication_factor=1)]).values():
        f.result(30)
    p = ck.Producer({"bootstrap.servers": b.bootstrap})
    for part, n in enumerate(COUNTS):
        for i in range(n):
            p.produce("shop", key=b"key-%d" % i, value=json.dumps({"n": i}).encode(),
                      partition=part)
    check(p.flush(30) == 0, "unsent")
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "buyers"})
    c.commit(offsets=[ck.TopicPartition("shop", 0, 5)], asynchronous=False)
    c.close()
    md = a.list_topics(timeout=10)
    base = "http://127.0.0.1:%d/" % port

    d.get(base + "#/cluster")
    check(wait_for(d, "#cluster-id").text == md.cluster_id, "cluster id")
    check(text_of(d, "#broker-count") == str(len(md.brokers)), "broker count")
    check(text_of(d, "#controller-id") == str(md.controller_id), "controller")

    d.get(base + "#/topics")
    row = wait_for(d, 'tr[data-topic="shop"]')
    check(row.find_element(By.CSS_SELECTOR, ".partitions").text == "3", "partition count")

    row.find_element(By.TAG_NAME, "a").click()
    wait_for(d, "#partitions")
    check(text_of(d, "#topic-name") == "shop", "topic page")
    for part, n in enumerate(COUNTS):
        hw = text_of(d, 'tr[data-partition="%d"] .hw' % part)
        check(hw == str(n), "partition %d HW %s != %d" % (part, hw, n))

    d.get(base + "#/groups")
    wait_for(d, 'tr[data-group="buyers"]')
    d.get(base + "#/groups/buyers")
    check(wait_for(d, "#group-lag").text == str(COUNTS[0] - 5), "group lag")
    check(text_of(d, "#group-state") == "Empty", "group state")
    check(text_of(d, 'tr[data-tp="shop/0"] .committed') == "5", "committed offset")

    # live refresh: more records while the topic page is open
    d.get(base + "#/topics/shop")
    wait_for(d, 'tr[data-partition="0"] .hw')
    for i in range(7):
        p.produce("shop", value=b"late", partition=0)
    check(p.flush(30) == 0, "unsent")
    WebDriverWait(d, 15).until(
        lambda x: x.find_element(By.CSS_SELECTOR, 'tr[data-partition="0"] .hw').text ==
        str(COUNTS[0] + 7))

    # the record browser: offsets 2.. of partition 1 as text, JSON and hex
    d.get(base + "#/records/shop/1")
    wait_for(d, "#rec-form")
    o = d.find_element(By.ID, "rec-offset")
    o.clear()
    o.send_keys("2")
    m = d.find_element(By.ID, "rec-max")
    m.clear()
    m.send_keys("3")
    d.find_element(By.ID, "rec-go").click()
    wait_for(d, "#records")
    rows = d.find_elements(By.CSS_SELECTOR, "#records tr[data-offset]")
    check([r.get_attribute("data-offset") for r in rows] == ["2", "3", "4"], "record offsets")
    check(rows[0].find_element(By.CSS_SELECTOR, ".key").text == "key-2", "key as text")
    check(json.loads(rows[0].find_element(By.CSS_SELECTOR, ".value").text) == {"n": 2},
          "value as text")
    Select(d.find_element(By.ID, "rec-format")).select_by_value("json")
    v = d.find_element(By.CSS_SELECTOR, '#records tr[data-offset="2"] .value').text
    check(v == json.dumps({"n": 2}, indent=2), "value as JSON: %r" % v)
    Select(d.find_element(By.ID, "rec-format")).select_by_value("hex")
    k = d.find_element(By.CSS_SELECTOR, '#records tr[data-offset="2"] .key').text
    check(k == " ".join("%02x" % x for x in b"key-2"), "key as hex: %r" % k)
    logs = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
    check(not logs, "browser console errors: %r" % logs)


if __name__ == "__main__":
    main()
