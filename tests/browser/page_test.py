"""The web page in a real browser (Debian's chromium, driven by playwright), against the
real pipeline that tests/api/browser.rs started. Run as:

    python3 tests/browser/page_test.py <scenario> <base url> <screenshot folder>

It exits non-zero (with the failing check) when the page does not do what a user expects.
"""

import base64
import re
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# A loaded CI machine runs many pipelines at once: give each check time (it passes as soon
# as the page shows what it waits for).
expect.set_options(timeout=20_000)
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def submit(page, prompt, model=None):
    page.fill("#prompt", prompt)
    if model:
        page.select_option("#model", model)
    page.click("#submit")


def main_story(browser, base, shots):
    """Submit, watch it live, find it in the gallery, open it; a failing job shows why."""
    page = browser.new_page(viewport=DESKTOP)
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(base)
    expect(page.locator("#model option")).not_to_have_count(0)
    expect(page.locator("#model option", has_text="not AI").or_(page.locator("#model option", has_text="非 AI"))).to_have_count(1)

    submit(page, "一只在雪地里的红狐狸", "huiying/placeholder")
    card = page.locator(".job").first
    expect(card).to_have_attribute("data-status", "completed", timeout=60_000)
    picture = card.locator("img")
    expect(picture).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=picture.element_handle())
    job_id = card.get_attribute("data-id")
    assert any(url.endswith(f"/jobs/{job_id}/events") for url in requests), "followed over Server-Sent Events"
    assert not any(url.endswith(f"/jobs/{job_id}") for url in requests), "no polling of the job's status"

    submit(page, "a picture the model refuses", "dall-e-3")
    failed = page.locator(".job").first
    expect(failed).to_have_attribute("data-status", "failed", timeout=60_000)
    expect(failed.locator(".reason")).to_contain_text("safety system")
    page.screenshot(path=shots / "create-desktop.png", full_page=True)

    page.click("#tab-gallery")
    expect(page.locator(".tile")).to_have_count(1, timeout=30_000)
    thumbnail = page.locator(".tile img").first.get_attribute("src")
    assert "/thumbs/" in thumbnail, f"the grid shows the thumbnail, not the picture: {thumbnail}"
    page.fill("#q", "红狐")
    page.click("#search-button")
    expect(page.locator(".tile")).to_have_count(1)
    page.screenshot(path=shots / "gallery-desktop.png", full_page=True)
    page.fill("#q", "蓝鲸")
    page.click("#search-button")
    expect(page.locator(".tile")).to_have_count(0)
    expect(page.locator("#more-status")).to_have_text(re.compile("没有找到|No pictures"))

    page.fill("#q", "")
    page.click("#search-button")
    page.locator(".tile").first.click()
    detail = page.locator("#detail")
    expect(detail).to_be_visible()
    expect(detail).to_contain_text("一只在雪地里的红狐狸")
    expect(detail).to_contain_text("a red fox in the snow")
    expect(detail.locator("[data-fact]").last).not_to_have_text("…")
    expect(detail).to_contain_text("已发送")  # the mail's outcome, from the mailer's log
    page.screenshot(path=shots / "detail-desktop.png")

    # Keyboard: the tile opens with Enter, Escape closes the dialog.
    page.keyboard.press("Escape")
    expect(detail).to_be_hidden()
    page.locator(".tile").first.focus()
    page.keyboard.press("Enter")
    expect(detail).to_be_visible()
    page.keyboard.press("Escape")
    elsewhere = [url for url in requests if not url.startswith(base) and not url.startswith("data:")]
    assert not elsewhere, f"the page works offline: it fetched {elsewhere}"

    # In English, and on a phone.
    phone = browser.new_page(viewport=PHONE, is_mobile=True, has_touch=True)
    phone.goto(base)
    phone.click("#lang")
    expect(phone.locator("#tab-gallery")).to_have_text("Gallery")
    phone.screenshot(path=shots / "create-phone.png", full_page=True)
    phone.click("#tab-gallery")
    expect(phone.locator(".tile")).to_have_count(1, timeout=30_000)
    phone.screenshot(path=shots / "gallery-phone.png", full_page=True)
    phone.locator(".tile").first.click()
    expect(phone.locator("#detail")).to_contain_text("Original prompt")
    phone.screenshot(path=shots / "detail-phone.png")
    overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the phone view scrolls sideways by {overflow}px"


def key_story(browser, base, shots):
    """With API keys set, the page asks for one, and works once it is given."""
    page = browser.new_page(viewport=DESKTOP)
    page.goto(base)
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    page.screenshot(path=shots / "key-desktop.png")
    page.fill("#key-input", "hy-wrong-key")
    page.click("#key-save")
    expect(dialog).to_be_visible()  # a wrong key is asked for again
    page.fill("#key-input", "hy-browser-key")
    page.click("#key-save")
    expect(dialog).to_be_hidden()
    expect(page.locator("#model option")).not_to_have_count(0)
    submit(page, "a lighthouse at dusk", "huiying/placeholder")
    expect(page.locator(".job").first).to_have_attribute("data-status", "completed", timeout=60_000)
    assert page.evaluate("sessionStorage.getItem('huiying-key')") == "hy-browser-key"


def sign_in(browser, base, key):
    page = browser.new_page(viewport=DESKTOP)
    page.goto(base)
    expect(page.locator("#key-dialog")).to_be_visible()
    page.fill("#key-input", key)
    page.click("#key-save")
    expect(page.locator("#key-dialog")).to_be_hidden()
    return page


def owners_story(browser, base, shots):
    """Each key sees its own gallery; an admin sees all and filters by owner; the owner
    deletes a picture from its detail, after a confirmation."""
    design = sign_in(browser, base, "design-key")
    expect(design.locator("#model option")).not_to_have_count(0)
    submit(design, "a red fox for the design team", "huiying/placeholder")
    expect(design.locator(".job").first).to_have_attribute("data-status", "completed", timeout=60_000)
    design.click("#tab-gallery")
    expect(design.locator(".tile")).to_have_count(1, timeout=30_000)  # not the ops key's picture
    expect(design.locator("#owner-row")).to_be_hidden()

    root = sign_in(browser, base, "root-key")
    root.click("#tab-gallery")
    expect(root.locator(".tile")).to_have_count(2, timeout=30_000)
    expect(root.locator("#owner-row")).to_be_visible()
    root.fill("#filter-owner", "ops")
    root.click("#search-button")
    expect(root.locator(".tile")).to_have_count(1)
    expect(root.locator(".tile")).to_contain_text("grey wolf")
    root.locator(".tile").first.click()
    expect(root.locator("#detail")).to_contain_text("ops")  # the owner, shown to an admin
    root.screenshot(path=shots / "admin-detail-desktop.png")

    design.locator(".tile").first.click()
    detail = design.locator("#detail")
    expect(detail).to_be_visible()
    asked = []
    design.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    design.click("#delete")
    assert asked, "deleting asks first"
    expect(detail).to_be_visible()  # dismissed: nothing deleted
    design.once("dialog", lambda dialog: dialog.accept())
    design.click("#delete")
    expect(detail).to_be_hidden()
    expect(design.locator(".tile")).to_have_count(0)
    design.click("#search-button")
    expect(design.locator("#more-status")).to_have_text(re.compile("没有找到|No pictures"))


def spend_story(browser, base, shots):
    """A key with a daily budget sees what it spent this month, per day, under its budget line."""
    page = sign_in(browser, base, "design-key")
    page.click("#tab-spend")
    total = page.locator("#spend-total")
    expect(total).to_contain_text("$0.0780")  # two pictures at $0.039, as the provider reported
    expect(total).to_contain_text("$0.39")  # the key's daily budget
    expect(page.locator("#spend-chart rect")).to_have_count(1)  # one day so far
    expect(page.locator("#budget-line")).to_have_count(1)
    page.screenshot(path=shots / "spend-desktop.png", full_page=True)


# A 64×64 PNG, opaque orange: the picture the edit story uploads.
ORANGE_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAIAAAAlC+aJAAAATUlEQVR42u3PQQkAAAgEsOuPnb0IvoXBCiw7eS0CAgICAgICAgICAgICAgICAgIC"
    "AgICAgICAgICAgICAgICAgICAgICAgICAgICApcCCQexaQtDixEAAAAASUVORK5CYII="
)


def edit_story(browser, base, shots):
    """Upload a picture, run a style transfer with a preset, see the result beside its
    input, and find it in the edit records."""
    page = browser.new_page(viewport=DESKTOP)
    page.goto(base)
    page.click("#tab-edit")
    picture = shots / "orange.png"
    picture.write_bytes(ORANGE_PNG)
    page.select_option("#edit-kind", "style")
    expect(page.locator("#preset-row")).to_be_visible()
    expect(page.locator("#edit-preset option")).not_to_have_count(1)  # the presets arrived
    page.select_option("#edit-preset", "oil_painting")
    page.set_input_files("#edit-files", str(picture))
    expect(page.locator("#edit-inputs img")).to_have_count(1)
    page.click("#edit-submit")
    job = page.locator("#edit-jobs .job").first
    expect(job).to_have_attribute("data-status", "completed", timeout=60_000)
    # The result beside the picture it came from.
    expect(job.locator(".beside .inputs img")).to_have_count(1)
    expect(job.locator(".beside a img")).to_have_count(1)
    page.screenshot(path=shots / "edit-desktop.png", full_page=True)
    record = page.locator("#edit-records .record").first
    expect(record).to_contain_text("style", timeout=30_000)
    expect(record).to_have_attribute("data-job", job.get_attribute("data-id"))


def compare_story(browser, base, shots):
    """Compare one prompt on three models: a row of their pictures with time and cost, the
    refusal shown in its place; pick one, and the gallery marks it."""
    page = browser.new_page(viewport=DESKTOP)
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(base)
    page.click("#tab-compare")
    expect(page.locator("#compare-models input")).not_to_have_count(0)
    page.fill("#compare-prompt", "黎明时分的灯塔")
    page.click("#compare-submit")
    expect(page.locator("#compare-error")).to_have_text(re.compile("2"))  # two models at least
    # The page lists each provider's default model; any other is typed in.
    for model in ["huiying/placeholder", "dall-e-3"]:
        page.check(f"#compare-models input[value='{model}']")
    page.fill("#compare-other", "google/gemini-2.5-flash-image")
    page.fill("#compare-seed", "7")
    page.click("#compare-submit")
    cells = page.locator("#comparison .compare-row").first.locator(".cell")
    expect(cells).to_have_count(3)
    gemini = cells.filter(has_text="google/gemini-2.5-flash-image")
    expect(gemini).to_have_attribute("data-status", "completed", timeout=60_000)
    expect(cells.filter(has_text="huiying/placeholder")).to_have_attribute("data-status", "completed", timeout=60_000)
    refused = cells.filter(has_text="dall-e-3")
    expect(refused).to_have_attribute("data-status", "failed", timeout=60_000)
    expect(refused.locator(".reason")).to_contain_text("safety system")
    expect(gemini.locator(".facts")).to_contain_text("$0.0390")  # what the provider said it cost
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=gemini.locator("img").element_handle())
    gemini.get_by_role("button").click()
    expect(gemini).to_have_attribute("data-picked", "true")
    expect(gemini.locator(".badge.picked")).to_be_visible()
    expect(page.locator("#comparison .cell[data-picked='true']")).to_have_count(1)
    group = page.locator("#comparison .compare-row").first.get_attribute("data-group")
    assert any(url.endswith(f"/groups/{group}/events") for url in requests), "followed over Server-Sent Events"
    page.screenshot(path=shots / "compare-desktop.png", full_page=True)

    page.click("#tab-gallery")
    expect(page.locator(".tile")).to_have_count(2, timeout=30_000)
    expect(page.locator(".tile .badge.picked")).to_have_count(1)
    picked = page.locator(".tile", has=page.locator(".badge.picked"))
    expect(picked).to_have_attribute("data-job", gemini.get_attribute("data-job"))
    page.set_viewport_size(PHONE)
    page.click("#tab-compare")
    page.screenshot(path=shots / "compare-phone.png", full_page=True)


def main():
    scenario, base, shots = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            {"main": main_story, "keys": key_story, "owners": owners_story, "spend": spend_story, "edit": edit_story, "compare": compare_story}[scenario](browser, base.rstrip("/") + "/", shots)
        finally:
            browser.close()
    print(f"{scenario}: ok; screenshots in {shots}")


if __name__ == "__main__":
    main()
