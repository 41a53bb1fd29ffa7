#!/usr/bin/env python3
"""Drives the library page in headless Chromium (Debian's chromium + chromium-driver + python3-selenium).

Usage: page_test.py BASE_URL WORKFLOW_FILE EXPECTATIONS_JSON
Run by Tests/TSRServerTests/WebPageTests.swift against a live API; exits non-zero with the reason.
"""
import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

base, workflow_path, expected_path = sys.argv[1], sys.argv[2], sys.argv[3]
expected = json.load(open(expected_path))

options = Options()
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]:
    options.add_argument(flag)
options.binary_location = "/usr/bin/chromium"
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
steps = []


def wait(what, condition, timeout=30):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = condition()
            if last:
                steps.append(what)
                return last
        except Exception as error:  # the element may not exist yet
            last = error
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {what} (last: {last!r})")


def rows():
    return driver.find_elements(By.CSS_SELECTOR, "#models tbody tr")


def click(selector):
    """Clicks, finding the element again if the page re-rendered it in between."""
    def attempt():
        driver.find_element(By.CSS_SELECTOR, selector).click()
        return True
    deadline = time.time() + 10
    while True:
        try:
            return attempt()
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.1)


def text(selector):
    return driver.find_element(By.CSS_SELECTOR, selector).text


try:
    driver.get(base + "/")
    wait("the library lists every model", lambda: len(rows()) == expected["models"])
    wait("the header shows the totals", lambda: f"{expected['present']} models here" in text("#stats"))

    search = driver.find_element(By.ID, "search")
    search.send_keys(expected["search"])
    wait("search keeps one model", lambda: len(rows()) == 1 and expected["search_hit"] in rows()[0].text)
    click("#models tbody tr")
    wait("the model page shows trigger words", lambda: expected["trigger"] in text("#triggers"))
    wait("the model page shows the creator", lambda: expected["creator"] in text("#detail"))
    wait("the model page shows an example prompt", lambda: len(driver.find_elements(By.CSS_SELECTOR, "#detail .prompt")) > 0)
    search.clear()
    search.send_keys(" ")  # input event with an empty query
    search.clear()
    driver.execute_script("document.getElementById('search').dispatchEvent(new Event('input'))")
    wait("clearing the search lists everything again", lambda: len(rows()) == expected["models"])

    click('#facet-folder button[data-value="loras"]')
    wait("the loras folder filter", lambda: len(rows()) == expected["loras"])
    click(f'#facet-creator button[data-value="{expected["creator"]}"]')
    wait("folder and creator together", lambda: len(rows()) == 1)
    click("#facet-creator li:first-child button")
    wait("any creator again", lambda: len(rows()) == expected["loras"])
    click("#facet-folder li:first-child button")
    wait("back to all models", lambda: len(rows()) == expected["models"])

    click('nav.tabs button[data-tab="workflow"]')
    assert "never saved" in driver.find_element(By.CSS_SELECTOR, ".keys").get_attribute("textContent"), "the key fields say they are never saved"
    content = open(workflow_path).read()
    driver.execute_script(
        """
        const file = new File([arguments[0]], arguments[1], { type: "application/json" });
        const transfer = new DataTransfer();
        transfer.items.add(file);
        const target = document.getElementById("drop");
        target.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        target.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        """,
        content,
        "portrait.json",
    )
    wait("the dropped workflow is checked against its sources", lambda: expected["summary"] in text("#wfsummary"))
    wait("the workflow is named after the file", lambda: driver.find_element(By.ID, "wfname").get_attribute("value") == "portrait")
    missing_row = f'#wfentries tr[data-file="{expected["missing_file"]}"]'
    assert "remote" in text(missing_row + " .status"), text(missing_row)
    click("#download")
    wait("the missing file downloads with live progress", lambda: "completed" in text(missing_row + " .status"), timeout=60)
    wait("the download reports its end", lambda: "All 1 downloaded" in text("#dlstatus"))
    click('nav.tabs button[data-tab="downloads"]')
    wait("the downloads tab lists it", lambda: "completed" in text("#downloads tbody"))
    wait("the library counts it", lambda: f"{expected['present'] + 1} models here" in text("#stats"))

    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, f"console errors: {errors}"
    print(f"page test: ok ({len(steps)} checks: " + "; ".join(steps) + ")")
except Exception as error:
    print(f"page test FAILED after {len(steps)} checks ({'; '.join(steps)}): {error}")
    try:
        for selector in ["#wfsummary", "#wferror", "#dlstatus", "#wfentries"]:
            print(selector, "=", repr(driver.find_element(By.CSS_SELECTOR, selector).get_attribute("textContent")[:500]))
        print(driver.find_element(By.TAG_NAME, "body").text[:1500])
        print("console:", driver.get_log("browser"))
        print("textarea:", driver.find_element(By.ID, "wfjson").get_attribute("value")[:200])
    except Exception:
        pass
    sys.exit(1)
finally:
    driver.quit()
