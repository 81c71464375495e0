"""The shopper's and the operator's pages in real headless Chromium (Debian's, driven by Playwright), against a real
gateway serving the tiny variant with the test catalogue indexed. Controls are found by role and name, as a screen
reader finds them; the page is given nothing but its address (it fetches its own search-only key)."""

from __future__ import annotations

import base64
import csv
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, Route, expect, sync_playwright

from services.apps.gateway.app import create_app
from services.catalogue import CatalogueItem, read_catalogue
from services.settings import Settings
from tests.helpers import COLOURS, encode, make_settings, photo, photo_server, served, shared_data

PAGE_SIZE = 12  # results per page on the shopper's page
SHOP_SLICE = 30  # products of each master category in the real-model catalogue (of apparel, 17 Tshirts)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, tiny_registry: Path, indexed_catalogue: Path) -> Iterator[str]:
    """A real gateway on loopback over the tiny variant, the test catalogue indexed; yields its address."""
    settings = make_settings(tmp_path_factory.mktemp("data"), tiny_registry)
    settings.allowed_image_roots = [indexed_catalogue]
    settings.public_search_key = True  # a test key is configured too: ask for the page's key
    app = create_app(settings)
    with served(app) as url:
        outcomes = app.state.runtime.pipeline.run(list(read_catalogue(indexed_catalogue)), ["tiny"])
        assert {outcome.status for outcome in outcomes} == {"indexed"}
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("the page tests need Debian's chromium: deploy/test.sh installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, gateway: str) -> Iterator[Page]:
    """A fresh browser context on the shopper's page; fails the test if a page sent anything to another origin, or
    tried to and was stopped by the gateway's content policy (only ReDoc's bundle may try: it asks for its maker's
    logo)."""
    context = browser.new_context(base_url=gateway, viewport={"width": 1280, "height": 900})
    elsewhere: list[str] = []

    def outside(route: Route) -> None:
        elsewhere.append(route.request.url)
        route.abort()

    context.route(lambda url: not url.startswith(gateway), outside)
    context.expose_binding("reportBlocked", lambda source, uri: elsewhere.append(f"{uri} from {source['page'].url}"))
    context.add_init_script(
        'document.addEventListener("securitypolicyviolation", (e) => window.reportBlocked(e.blockedURI));'
    )
    opened = context.new_page()
    opened.goto("/")
    expect(opened.get_by_label("Model")).to_have_value("tiny")
    yield opened
    context.close()
    tried = [entry for entry in elsewhere if not entry.startswith("https://cdn.redoc.ly/redoc/logo-mini.svg from")]
    assert not tried, f"the page asked for things outside its origin: {tried}"


def results(page: Page) -> Locator:
    return page.get_by_role("list", name="Results").get_by_role("listitem")


def titles(page: Page) -> list[str]:
    return results(page).locator(".title").all_inner_texts()


def product_photo(name: str, shape: str) -> bytes:
    return encode(photo(COLOURS[name], shape))


def hand_over(page: Page, how: str, data: bytes, name: str = "query.jpg", mime: str = "image/jpeg") -> None:
    """Drop a file on the page, or paste it, as the browser would hand it to the page's listeners."""
    page.evaluate(
        """([how, name, data, mime]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            const event = how === "drop"
                ? new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true })
                : new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true });
            (how === "drop" ? document.querySelector("main") : document).dispatchEvent(event);
        }""",
        [how, name, base64.b64encode(data).decode(), mime],
    )


def test_a_photo_dropped_pasted_or_picked_finds_its_product_and_stays_in_view(page: Page, tmp_path: Path) -> None:
    picked = tmp_path / "yellow.jpg"
    picked.write_bytes(product_photo("yellow", "square"))
    ways = [
        ("drop", "red", "circle", lambda data: hand_over(page, "drop", data)),
        ("paste", "blue", "square", lambda data: hand_over(page, "paste", data)),
        ("pick", "yellow", "square", lambda _: page.get_by_label("Choose a photo").set_input_files(picked)),
    ]
    for how, colour, shape, send in ways:
        send(product_photo(colour, shape))
        expect(results(page).first.locator(".title"), how).to_have_text(f"{colour} {shape}")
        expect(results(page), how).to_have_count(PAGE_SIZE)
        shown = page.get_by_role("img", name="The photo searched")
        expect(shown).to_be_visible()
        size = shown.bounding_box()  # a useful size, the photo's own shape (boxes are placed in it)
        assert shown.evaluate("image => image.naturalWidth") == 96 and size["width"] >= 240
        assert abs(size["height"] / size["width"] - 128 / 96) < 0.02
        expect(page.get_by_role("button", name="Whole photo")).to_have_attribute("aria-pressed", "true")


def test_a_heic_dropped_is_searched_though_the_browser_cannot_show_it(page: Page) -> None:
    """Chromium shows no HEIC (an iPhone's photo): the API searches it, and the page says why the photo is not
    shown; the next photo is shown again."""
    hand_over(page, "drop", encode(photo(COLOURS["red"], "circle"), "HEIF"), name="IMG_0001.HEIC", mime="image/heic")
    expect(results(page).first.locator(".title")).to_have_text("red circle")
    expect(page.get_by_text("This browser cannot show your photo.", exact=True)).to_be_visible()
    expect(page.get_by_role("img", name="The photo searched")).to_be_hidden()
    hand_over(page, "drop", product_photo("blue", "square"))
    expect(results(page).first.locator(".title")).to_have_text("blue square")
    expect(page.get_by_role("img", name="The photo searched")).to_be_visible()
    expect(page.get_by_text("This browser cannot show your photo")).to_have_count(0)


def test_a_results_photo_dragged_onto_the_page_is_searched(page: Page) -> None:
    """Its address is the gateway's own, which the gateway does not fetch from itself: the page sends the photo."""
    page.get_by_label("Words").fill("green")
    page.get_by_label("Words").press("Enter")
    expect(results(page)).to_have_count(PAGE_SIZE)
    first = titles(page)[0]
    address = results(page).first.locator("img").evaluate("image => image.src")
    record_forms(page)
    page.evaluate(
        """(address) => { const transfer = new DataTransfer(); transfer.setData("text/uri-list", address);
            document.querySelector("main").dispatchEvent(
                new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true })); }""",
        address,
    )
    expect(page.get_by_role("button", name="Remove Your photo")).to_be_visible()
    expect(results(page).first.locator(".title")).to_have_text(first)
    expect(page.get_by_role("alert")).to_be_empty()
    sent = page.evaluate("window.sentFields")[-1]
    assert "image" in sent and "image_url" not in sent  # sent by the page (a gateway may not reach its own address)


def record_forms(page: Page) -> None:
    """From now on the fields of each form the page sends are kept in window.sentFields (Chromium does not show
    Playwright a body that holds a file)."""
    page.evaluate(
        """() => { window.sentFields = []; const send = window.fetch;
                   window.fetch = (url, options = {}) => {
                       if (options.body instanceof FormData) window.sentFields.push([...options.body.keys()]);
                       return send(url, options); }; }"""
    )


def test_a_photo_address_is_searched_and_kept_in_the_pages_address(page: Page) -> None:
    with photo_server({"green.jpg": product_photo("green", "circle")}) as (base, hits):
        page.get_by_label("Photo address").fill(f"{base}/green.jpg")
        page.get_by_role("button", name="Search this photo").click()
        expect(results(page).first.locator(".title")).to_have_text("green circle")
    assert hits["/green.jpg"] == 1  # fetched by the gateway, not by the page
    expect(page.get_by_text(f"The photo at {base}/green.jpg")).to_be_visible()
    expect(page.get_by_role("img", name="The photo searched")).to_be_hidden()  # the page never fetched it
    assert parse_qs(urlparse(page.url).query)["photo"] == [f"{base}/green.jpg"]


def test_words_show_what_they_were_understood_as_and_a_chip_takes_it_back(page: Page) -> None:
    page.get_by_label("Words").fill("red caps")
    page.get_by_label("Words").press("Enter")
    expect(page.get_by_text("Understood colour: red")).to_be_visible()
    expect(page.get_by_text("Understood category: Caps")).to_be_visible()
    expect(results(page).first.locator(".title")).to_have_text("red circle")
    page.get_by_role("button", name="Remove Understood category: Caps").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Words")).to_have_value("red")
    expect(page.get_by_text("Understood category: Caps")).to_have_count(0)
    expect(results(page).first.locator(".title")).to_contain_text("red")
    assert sorted(titles(page)[:2]) == ["red circle", "red square"]
    expect(page.get_by_role("status")).to_be_focused()  # the chip is gone: on what came back
    page.get_by_label("Words").fill("red caps")
    page.get_by_label("Words").press("Enter")
    expect(page.get_by_text("Understood category: Caps")).to_be_visible()
    page.route("**/v1/search", lambda route: route.abort("connectionrefused"))
    page.get_by_role("button", name="Remove Understood category: Caps").click()
    expect(page.get_by_role("alert")).to_contain_text("could not be reached")
    expect(page.get_by_role("alert")).to_be_focused()  # the status line is empty: on what went wrong
    page.unroute("**/v1/search")
    page.get_by_label("Words").fill("")  # nothing left to search: nothing shown, nothing kept in the address
    page.get_by_label("Words").press("Enter")
    expect(results(page)).to_have_count(0)
    expect(page.get_by_text("Understood colour: red")).to_have_count(0)
    assert "q" not in parse_qs(urlparse(page.url).query)


def test_taking_back_a_word_takes_the_words_that_only_joined_it(page: Page) -> None:
    """Without its colour, "caps in red" searched "caps in" (the "in" as words of their own)."""
    page.get_by_label("Words").fill("caps in red")
    page.get_by_label("Words").press("Enter")
    page.get_by_role("button", name="Remove Understood colour: red").click()
    expect(page.get_by_label("Words")).to_have_value("caps")
    expect(page.get_by_text("Understood category: Caps")).to_be_visible()
    assert parse_qs(urlparse(page.url).query)["q"] == ["caps"]
    page.get_by_label("Words").fill("the red caps")  # a joining word before another stays
    page.get_by_label("Words").press("Enter")
    page.get_by_role("button", name="Remove Understood category: Caps").click()
    expect(page.get_by_label("Words")).to_have_value("the red")


def test_words_with_a_photo_steer_it(page: Page, tmp_path: Path) -> None:
    square = tmp_path / "blue.jpg"
    square.write_bytes(product_photo("blue", "square"))
    page.get_by_label("Choose a photo").set_input_files(square)
    expect(results(page).first.locator(".title")).to_have_text("blue square")
    page.get_by_label("Words").fill("caps")
    page.get_by_label("Words").press("Enter")
    expect(page.get_by_text("Understood category: Caps")).to_be_visible()
    expect(page.get_by_text("Your photo")).to_be_visible()
    first_six = results(page).locator(".attrs").all_inner_texts()[:6]
    assert all(text.startswith("Caps") for text in first_six), first_six
    page.go_back()  # the photo alone again: a photo from this device is kept for the history's entries
    expect(page.get_by_label("Words")).to_have_value("")
    expect(page.get_by_role("button", name="Remove Your photo")).to_be_visible()
    expect(page.get_by_text("Understood category: Caps")).to_have_count(0)
    expect(results(page).first.locator(".title")).to_have_text("blue square")


def test_a_drawing_made_with_the_mouse_is_searched_as_a_drawing(page: Page) -> None:
    page.get_by_role("tab", name="Photo").focus()
    page.keyboard.press("End")  # the tab pattern's keys: End, Home, the arrows
    expect(page.get_by_role("tab", name="Drawing")).to_be_focused()
    expect(page.get_by_role("tab", name="Drawing")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Home")
    expect(page.get_by_role("tab", name="Photo")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("group", name="Drawing tools")).to_be_hidden()
    page.get_by_role("tab", name="Drawing").click()
    expect(page.get_by_role("group", name="Drawing tools")).to_be_visible()
    record_forms(page)
    page.get_by_role("button", name="Search this drawing").click()
    expect(page.get_by_role("alert")).to_have_text("Draw something on the canvas first.")
    draw(page, [[(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8), (0.2, 0.2)]] * 2)
    said = page.locator("#drawing-said[aria-live=polite]")  # read out (the one status line says what was found)
    page.get_by_role("button", name="Undo").click()
    expect(said).to_have_text("Undone: 1 stroke left.")  # only the canvas showed it
    page.get_by_role("button", name="Clear drawing").click()
    expect(said).to_have_text("Cleared: the drawing is empty.")
    page.get_by_role("button", name="Undo").click()
    expect(said).to_have_text("Nothing to undo: the drawing is empty.")
    draw(page, [[(0.3, 0.3), (0.7, 0.3), (0.7, 0.7), (0.3, 0.7), (0.3, 0.3)]])
    page.get_by_role("button", name="Search this drawing").click()
    expect(results(page)).to_have_count(PAGE_SIZE)
    expect(page.get_by_text("Your drawing")).to_be_visible()
    sent = page.evaluate("window.sentFields")[-1]
    assert "sketch" in sent and "image" not in sent
    ink = page.evaluate(
        """() => { const c = document.getElementById("sketch-canvas");
                   const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
                   let dark = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 128) dark++; return dark; }"""
    )
    assert 1000 < ink < 30_000  # one square's outline: the undone stroke is gone


def test_a_drawing_rubbed_out_or_refused_leaves_the_query_and_the_words_stay_searched(page: Page) -> None:
    """A stroke rubbed out with the eraser is no drawing; a drawing the search cannot use (a dot) is taken away and
    the words searched without it (it stayed, and every later search was refused for it)."""
    page.get_by_role("tab", name="Drawing").click()
    stroke = [[(0.3, 0.5), (0.7, 0.5)]]
    draw(page, stroke)
    page.get_by_role("button", name="Eraser").click()
    draw(page, stroke)
    page.get_by_role("button", name="Search this drawing").click()
    expect(page.get_by_role("alert")).to_have_text("Draw something on the canvas first.")
    page.get_by_role("button", name="Pen").click()
    page.get_by_role("button", name="Clear drawing").click()
    page.get_by_label("Words").fill("red")
    page.get_by_label("Words").press("Enter")
    expect(results(page)).to_have_count(PAGE_SIZE)
    draw(page, [[(0.5, 0.5)]])  # a dot: drawn, but nothing the search can use
    page.get_by_role("button", name="Search this drawing").click()
    expect(page.get_by_role("alert")).to_contain_text("Your drawing could not be searched, so it was taken away")
    expect(page.get_by_role("button", name="Remove Your drawing")).to_have_count(0)
    expect(page.get_by_text("Understood colour: red")).to_be_visible()  # the words, searched without it
    expect(results(page)).to_have_count(PAGE_SIZE)
    expect(page.get_by_role("alert")).to_contain_text("taken away")  # the reason stays in view


def draw(page: Page, strokes: list[list[tuple[float, float]]], steps: int = 8) -> None:
    """Strokes with the mouse, in fractions of the canvas, each segment in `steps` moves."""
    box = page.get_by_role(
        "img", name="Drawing canvas: draw the product with a mouse, a finger or a pen"
    ).bounding_box()
    for stroke in strokes:
        (x, y), rest = stroke[0], stroke[1:]
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=steps)
        page.mouse.up()


def test_more_like_this_never_repeats_the_liked_product_and_less_like_this_drops_one(page: Page) -> None:
    page.get_by_label("Words").fill("green")
    page.get_by_label("Words").press("Enter")
    expect(results(page)).to_have_count(PAGE_SIZE)
    before = titles(page)
    page.get_by_role("button", name="More like this: purple square").click()
    expect(page.get_by_text("More like: purple square")).to_be_visible()
    expect(results(page)).to_have_count(PAGE_SIZE - 1)  # the catalogue less the liked product
    assert "purple square" not in titles(page) and titles(page) != before
    assert parse_qs(urlparse(page.url).query)["like"] == ["purple-square"]
    page.get_by_role("button", name="Less like this: black circle").click()
    expect(results(page)).to_have_count(PAGE_SIZE - 2)
    assert "black circle" not in titles(page)


def test_a_result_opens_with_enter_and_more_pages_load(page: Page) -> None:
    page.get_by_label("Words").fill("shirt")
    page.get_by_label("Words").press("Enter")
    expect(results(page)).to_have_count(PAGE_SIZE)
    first = titles(page)[0]
    page.get_by_role("button", name=f"Open {first}").focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name=first)
    expect(dialog).to_be_visible()
    expect(dialog.get_by_text("acme")).to_be_visible()
    terms = dialog.locator("dt").all_inner_texts()  # each field once, in words; not which photo matched
    assert terms[0] == "id" and "product id" not in terms and "image key" not in terms and "title" not in terms
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    page.get_by_label("Show scores").check()
    expect(results(page).first.locator(".score")).to_be_visible()


def test_facets_narrow_the_results_and_their_chips_remove_them(page: Page) -> None:
    page.get_by_label("Words").fill("yellow")
    page.get_by_label("Words").press("Enter")
    expect(results(page)).to_have_count(PAGE_SIZE)
    page.get_by_role("checkbox", name="Caps (6)").check()
    expect(results(page)).to_have_count(6)
    assert all(text.startswith("Caps") for text in results(page).locator(".attrs").all_inner_texts())
    assert parse_qs(urlparse(page.url).query)["filter.category"] == ["Caps"]
    page.get_by_role("button", name="Remove Filter: category Caps").click()
    expect(results(page)).to_have_count(PAGE_SIZE)
    expect(page.get_by_role("checkbox", name="Caps (6)")).not_to_be_checked()
    page.get_by_label("Lowest").fill("-5")
    page.get_by_label("Lowest").press("Enter")
    expect(page.get_by_role("alert")).to_have_text("The lowest price must be a number, 0 or more.")
    expect(page.get_by_label("Lowest")).to_have_attribute("aria-invalid", "true")
    assert "filter.price_min" not in parse_qs(urlparse(page.url).query)  # not searched
    page.get_by_label("Lowest").fill("")
    page.get_by_label("Lowest").press("Enter")
    expect(page.get_by_label("Lowest")).to_have_attribute("aria-invalid", "false")
    page.get_by_label("Highest").fill("1")
    page.get_by_label("Highest").press("Enter")
    expect(page.get_by_role("status")).to_contain_text("No product matches these filters (price at most 1)")
    page.go_back()  # the search before the price filter
    expect(results(page)).to_have_count(PAGE_SIZE)
    expect(page.get_by_label("Highest")).to_have_value("")


def test_a_refused_search_shows_what_the_query_holds_so_a_part_can_be_taken_away(page: Page) -> None:
    """A link with a filter on a field no product has: the API refuses it, and its chip takes it away."""
    page.goto("/?q=red&filter.fabric=silk")
    expect(page.get_by_role("alert")).to_contain_text("fabric")
    expect(results(page)).to_have_count(0)
    page.get_by_role("button", name="Remove Filter: fabric silk").click()
    expect(results(page)).to_have_count(PAGE_SIZE)
    expect(page.get_by_role("alert")).to_be_empty()


def test_back_after_a_reload_brings_back_no_photo_of_another_search(page: Page, tmp_path: Path) -> None:
    """The page keeps a device's photo for each of its history entries; entries of an earlier load have none."""
    page.get_by_label("Words").fill("shirt")
    page.get_by_label("Words").press("Enter")
    expect(results(page)).to_have_count(PAGE_SIZE)
    page.reload()
    expect(results(page)).to_have_count(PAGE_SIZE)
    square = tmp_path / "blue.jpg"
    square.write_bytes(product_photo("blue", "square"))
    page.get_by_label("Choose a photo").set_input_files(square)
    expect(page.get_by_role("button", name="Remove Your photo")).to_be_visible()
    page.go_back()
    expect(page.get_by_label("Words")).to_have_value("shirt")
    expect(page.get_by_role("button", name="Remove Your photo")).to_have_count(0)
    expect(page.get_by_role("img", name="The photo searched")).to_be_hidden()


def test_the_same_search_again_is_no_new_step_back_and_an_emptied_query_clears_its_error(page: Page) -> None:
    page.goto("/?like=no-such-product")
    expect(page.get_by_role("alert")).to_contain_text("no-such-product")
    page.get_by_role("button", name="Remove More like: no-such-product").click()
    expect(page.get_by_role("alert")).to_be_empty()  # nothing left to search: the old refusal goes too
    page.get_by_label("Words").fill("red")
    page.get_by_label("Words").press("Enter")
    expect(results(page)).to_have_count(PAGE_SIZE)
    steps = page.evaluate("history.length")
    with page.expect_response("**/v1/search"):
        page.get_by_label("Words").press("Enter")
    assert page.evaluate("history.length") == steps


def test_a_search_answered_after_back_left_it_paints_nothing(page: Page) -> None:
    held: list[Route] = []
    page.route("**/v1/search", lambda route: held.append(route))  # the answer held back
    page.get_by_label("Words").fill("blue")
    page.get_by_label("Words").press("Enter")
    page.wait_for_timeout(300)
    assert len(held) == 1
    page.go_back()  # to the empty page the shopper opened
    expect(page.get_by_role("status")).to_have_text("Search with words, a photo or a drawing.")
    held[0].continue_()
    page.wait_for_timeout(1000)
    expect(results(page)).to_have_count(0)
    expect(page.get_by_role("list", name="Search terms").get_by_role("listitem")).to_have_count(0)
    assert page.get_by_role("list", name="Results").get_attribute("aria-busy") is None


def test_the_model_card_shows_what_the_card_holds(page: Page) -> None:
    page.get_by_text("About this model").click()
    card = page.locator("#card-fields")
    expect(card).to_contain_text("Stage")
    expect(card).to_contain_text("test")
    expect(card).to_contain_text("Photos indexed")
    expect(page.locator("#unavailable")).to_contain_text("ViT-B-16/openai")  # registered, weights not here


def test_a_file_that_is_not_a_photo_is_refused_in_words_and_taken_away(page: Page, tmp_path: Path) -> None:
    """The refused file leaves the query: the next words are searched alone, not refused for it again."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    page.get_by_label("Choose a photo").set_input_files(notes)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Your photo could not be searched, so it was taken away")
    assert "{" not in alert.inner_text() and "image" in alert.inner_text().lower()
    expect(page.get_by_role("button", name="Remove Your photo")).to_have_count(0)
    page.get_by_label("Words").fill("red")
    page.get_by_label("Words").press("Enter")
    expect(results(page)).to_have_count(PAGE_SIZE)
    expect(alert).to_be_empty()
    page.get_by_label("Choose a photo").set_input_files(notes)  # with words: they are searched without it
    expect(alert).to_contain_text("Your photo could not be searched, so it was taken away")
    expect(page.get_by_text("Understood colour: red")).to_be_visible()
    expect(results(page)).to_have_count(PAGE_SIZE)
    expect(page.get_by_label("Words")).to_have_value("red")


def test_a_photo_too_big_to_send_is_shrunk_on_the_device_first(page: Page, tmp_path: Path) -> None:
    """A phone's biggest photos are 20 MB and more, past what the API takes: the page sends a smaller copy."""
    big = tmp_path / "big.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (1500, 5000, 3), dtype=np.uint8)
    Image.fromarray(noise).save(big, quality=100)
    assert big.stat().st_size > 8 * 1024 * 1024
    page.evaluate(
        """() => { window.sentPhotos = []; const send = window.fetch;
                   window.fetch = async (url, options = {}) => {
                       const photo = options.body instanceof FormData && options.body.get("image");
                       if (photo) { const shown = await createImageBitmap(photo);
                                    window.sentPhotos.push([photo.size, shown.width, shown.height]); }
                       return send(url, options); }; }"""
    )
    page.get_by_label("Choose a photo").set_input_files(big)
    expect(results(page)).to_have_count(PAGE_SIZE)
    size, width, height = page.evaluate("window.sentPhotos")[-1]
    assert size < big.stat().st_size and (width, height) == (4096, 1229)


def test_a_search_sent_before_the_page_has_its_key_waits_for_it(browser: Browser, gateway: str) -> None:
    """A shopper quicker than the page's start: the words go out once the key is there, not refused without it."""
    context = browser.new_context(base_url=gateway)
    held: list[Route] = []
    context.route("**/v1/public-key", lambda route: held.append(route))  # the key's answer held back
    shopper = context.new_page()
    shopper.goto("/")
    shopper.get_by_label("Words").fill("red")
    shopper.get_by_label("Words").press("Enter")
    shopper.wait_for_timeout(300)
    assert len(held) == 1 and results(shopper).count() == 0
    held[0].continue_()
    expect(results(shopper)).to_have_count(PAGE_SIZE)
    expect(shopper.get_by_role("alert")).to_be_empty()
    context.close()


@pytest.mark.parametrize("width", [390, 320])
def test_a_phone_wide_page_has_no_sideways_scroll(browser: Browser, gateway: str, width: int) -> None:
    """320 px: WCAG's reflow width; the file pickers were pushed 2 px past the left edge there."""
    context = browser.new_context(base_url=gateway, viewport={"width": width, "height": 844}, is_mobile=True)
    phone = context.new_page()
    phone.goto("/")
    for picker in ("Choose a photo", "Take a photo"):
        shown = phone.get_by_label(picker).bounding_box()
        assert shown is not None and shown["x"] >= 0 and shown["x"] + shown["width"] <= width, (picker, shown)
    phone.get_by_label("Words").fill("red")
    phone.get_by_label("Words").press("Enter")
    expect(results(phone)).to_have_count(PAGE_SIZE)
    expect(phone.get_by_role("status")).to_be_in_viewport()  # the results sit below the query: brought into view
    expect(phone.get_by_role("status")).to_be_focused()  # and the focus with them: the Search button is out of view
    assert phone.evaluate("document.documentElement.scrollWidth") <= width
    phone.get_by_role("tab", name="Drawing").click()
    assert phone.evaluate("document.documentElement.scrollWidth") <= width
    context.close()


def test_a_search_made_while_the_page_still_loads_is_the_one_answered(browser: Browser, gateway: str) -> None:
    """The page's start ran the query again once its filters came (it was meant for the address's query): a second
    search took the shopper's place, and on a phone its results stayed out of view, the focus on the words."""
    context = browser.new_context(base_url=gateway, viewport={"width": 390, "height": 844}, is_mobile=True)
    phone = context.new_page()
    held: list[Route] = []
    phone.route("**/v1/filters*", lambda route: held.append(route))  # the filters come late
    searches: list[str] = []
    phone.on("request", lambda request: searches.append(request.url) if "/v1/search" in request.url else None)
    phone.goto("/")
    phone.get_by_label("Words").fill("red")
    phone.get_by_label("Words").press("Enter")
    expect(results(phone)).to_have_count(PAGE_SIZE)
    assert len(held) == 1
    held[0].continue_()
    expect(phone.locator("#facets input").first).to_be_attached()  # the page's start has gone on to its end
    phone.wait_for_timeout(500)
    assert len(searches) == 1, searches
    expect(phone.get_by_role("status")).to_be_in_viewport()
    expect(phone.get_by_role("status")).to_be_focused()
    context.close()


def test_a_search_made_while_back_still_loads_is_the_one_answered(page: Page) -> None:
    for words in ("red", "blue"):
        page.get_by_label("Words").fill(words)
        page.get_by_label("Words").press("Enter")
        expect(page.get_by_role("list", name="Search terms")).to_contain_text(words)
    held: list[Route] = []
    page.route("**/v1/filters*", lambda route: held.append(route))
    page.go_back()  # to "red", whose filters come late
    expect(page.get_by_label("Words")).to_have_value("red")
    page.get_by_label("Words").fill("green")
    page.get_by_label("Words").press("Enter")
    expect(page.get_by_role("list", name="Search terms")).to_contain_text("green")
    searches: list[str] = []
    page.on("request", lambda request: searches.append(request.url) if "/v1/search" in request.url else None)
    held[0].continue_()
    page.wait_for_timeout(1000)
    assert searches == []  # Back's own search of "red" would have taken the place of "green"
    expect(page.get_by_role("list", name="Search terms")).to_contain_text("green")


def test_an_answer_to_the_search_back_left_paints_nothing_while_backs_filters_come(page: Page) -> None:
    page.get_by_label("Words").fill("blue")
    page.get_by_label("Words").press("Enter")
    expect(results(page).first.locator(".title")).to_contain_text("blue")
    held: list[Route] = []
    page.route("**/v1/search", lambda route: held.append(route))
    page.get_by_label("Words").fill("red")
    page.get_by_label("Words").press("Enter")
    page.wait_for_timeout(300)
    assert len(held) == 1
    filters: list[Route] = []
    page.route("**/v1/filters*", lambda route: filters.append(route))
    page.go_back()  # to "blue", whose filters come late
    expect(page.get_by_label("Words")).to_have_value("blue")
    held[0].continue_()  # the answer to "red" comes meanwhile
    page.wait_for_timeout(1000)
    expect(page.get_by_role("list", name="Search terms")).not_to_contain_text("red")
    page.unroute("**/v1/search")
    filters[0].continue_()
    expect(results(page).first.locator(".title")).to_contain_text("blue")


def test_a_photo_picked_while_a_big_one_shrinks_is_the_one_searched(page: Page, tmp_path: Path) -> None:
    big, small = tmp_path / "big.jpg", tmp_path / "blue.jpg"
    noise = np.random.default_rng(1).integers(0, 256, (3000, 5000, 3), dtype=np.uint8)
    Image.fromarray(noise).save(big, quality=100)
    small.write_bytes(product_photo("blue", "square"))
    record_forms(page)
    page.get_by_label("Choose a photo").set_input_files(big)
    page.get_by_label("Choose a photo").set_input_files(small)  # while the big one shrinks
    expect(results(page).first.locator(".title")).to_have_text("blue square")
    page.wait_for_timeout(1500)  # the big one shrunk by now: it would have taken the small one's place
    expect(results(page).first.locator(".title")).to_have_text("blue square")
    assert len(page.evaluate("window.sentFields")) == 1


def test_load_more_while_back_still_loads_leaves_backs_search_to_come(page: Page) -> None:
    """A next page is no new query: Back's search of its own query still comes (it was skipped, the older words
    shown over the newer query's results)."""
    for words in ("red", "blue"):
        page.get_by_label("Words").fill(words)
        page.get_by_label("Words").press("Enter")
        expect(page.get_by_role("list", name="Search terms")).to_contain_text(words)
    expect(page.get_by_role("button", name="Load more")).to_be_visible()
    held: list[Route] = []
    page.route("**/v1/filters*", lambda route: held.append(route))
    page.go_back()
    expect(page.get_by_label("Words")).to_have_value("red")
    page.get_by_role("button", name="Load more").click()
    page.wait_for_timeout(300)
    assert len(held) == 1
    held[0].continue_()
    expect(page.get_by_role("list", name="Search terms")).to_contain_text("red")


def test_the_model_card_fits_the_sidebar(page: Page) -> None:
    """Its values' column was 0 px wide (long field names took the sidebar), each value a letter a line over the
    results."""
    page.get_by_text("About this model").click()
    sidebar = page.get_by_role("complementary").bounding_box()
    values = page.locator("#card-fields dd")
    expect(values).not_to_have_count(0)
    for shown in (values.nth(i).bounding_box() for i in range(values.count())):
        assert shown is not None and shown["width"] > 100, shown
        assert shown["x"] + shown["width"] <= sidebar["x"] + sidebar["width"], (shown, sidebar)


def test_the_keyboard_reaches_the_results_first_and_fields_show_their_edges(page: Page) -> None:
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to the results")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Results")).to_be_focused()
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        edge, inside = page.get_by_label("Words").evaluate(
            """(field) => [getComputedStyle(field).borderTopColor,
                           getComputedStyle(field.closest(".panel")).backgroundColor]"""
        )
        assert contrast(edge, inside) >= 3, (scheme, edge, inside)  # WCAG 1.4.11: a field's edge is all there is


def contrast(one: str, other: str) -> float:
    """WCAG's contrast ratio of two CSS rgb() colours."""

    def luminance(colour: str) -> float:
        channels = [int(part) / 255 for part in colour[colour.index("(") + 1 : colour.index(")")].split(",")[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted([luminance(one), luminance(other)], reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_a_search_after_the_key_could_not_be_fetched_asks_for_it_again(browser: Browser, gateway: str) -> None:
    """The page's key is fetched once at load; where that failed, every search went without it and was refused."""
    context = browser.new_context(base_url=gateway)
    asked: list[str] = []

    def failing_twice(route: Route) -> None:  # a proxy's 502 while the gateway restarts, then the connection
        asked.append(route.request.url)
        if len(asked) == 1:
            route.fulfill(status=502, body="Bad Gateway")
        elif len(asked) == 2:
            route.abort("connectionrefused")
        else:
            route.continue_()

    context.route("**/v1/public-key", failing_twice)
    shopper = context.new_page()
    shopper.goto("/")
    expect(shopper.get_by_role("alert")).to_contain_text("could not be listed")  # no key: the models refused
    shopper.get_by_label("Words").fill("red")
    shopper.get_by_label("Words").press("Enter")  # asks again: refused again
    expect(shopper.get_by_role("alert")).to_contain_text("needs an API key")
    shopper.get_by_label("Words").press("Enter")
    expect(results(shopper)).to_have_count(PAGE_SIZE)
    expect(shopper.get_by_role("alert")).to_be_empty()
    expect(shopper.get_by_role("checkbox", name="Caps (6)")).to_be_visible()  # the filters asked again with it
    expect(shopper.get_by_label("Model")).to_have_value("tiny")
    assert len(asked) == 3
    context.close()


def test_api_docs_render_offline(page: Page) -> None:
    page.goto("/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("StyleFinder")
    page.goto("/redoc")
    expect(page.locator("h1").first).to_contain_text("StyleFinder")


def test_the_operator_page_lists_the_first_failures_of_a_big_job(
    browser: Browser, gateway: str, tmp_path: Path
) -> None:
    """Each poll brought every failure (10,000 failures: 2 MB a second): it asks for 200, and says how many more."""
    context = browser.new_context(base_url=gateway)
    operator = context.new_page()
    with photo_server({}) as (base, _):  # every photo missing: 404 at once
        listing = tmp_path / "gone.csv"
        listing.write_text("id,image\n" + "".join(f"gone-{n},{base}/{n}.jpg\n" for n in range(203)))
        operator.goto("/operator")
        operator.get_by_label("Admin or write API key").fill("test-admin-key")
        operator.get_by_role("button", name="Use this key").click()
        operator.get_by_label("Catalogue file").set_input_files(listing)
        operator.get_by_role("button", name="Upload catalogue").click()
        job = operator.get_by_role("article", name="Job: Catalogue gone.csv")
        expect(job.locator(".summary")).to_contain_text("Finished: failed", timeout=60_000)
    expect(job.get_by_role("listitem")).to_have_count(201)
    expect(job.get_by_role("listitem").last).to_contain_text("… and 3 more: GET /v1/jobs/")
    context.close()


def test_the_operator_submits_a_catalogue_and_watches_its_job(browser: Browser, gateway: str, tmp_path: Path) -> None:
    photos = {"coat.jpg": product_photo("black", "square"), "hat.jpg": product_photo("green", "circle")}
    context = browser.new_context(base_url=gateway)
    operator = context.new_page()
    with photo_server(photos) as (base, _):
        listing = tmp_path / "new.csv"
        rows = [("coat-1", "coat.jpg"), ("hat-1", "hat.jpg"), ("gone-1", "missing.jpg")]
        listing.write_text("id,image,title\n" + "".join(f"{i},{base}/{name},{i}\n" for i, name in rows))
        operator.goto("/operator")
        expect(operator.get_by_role("status")).to_have_text("Enter the admin key above.")
        operator.get_by_label("Admin or write API key").fill("test-admin-key")
        operator.get_by_role("button", name="Use this key").click()
        expect(operator.get_by_role("cell", name="tiny", exact=True)).to_be_visible()
        operator.get_by_label("Catalogue file").set_input_files(listing)
        operator.get_by_role("button", name="Upload catalogue").click()
        job = operator.get_by_role("article", name="Job: Catalogue new.csv")
        expect(job.locator(".summary")).to_contain_text("Finished: partly failed", timeout=60_000)
        expect(job.locator(".summary")).to_contain_text("2 indexed")
        expect(job.get_by_role("listitem")).to_contain_text("gone-1")
        assert job.get_by_role("progressbar").evaluate("bar => bar.value") == 3
    assert operator.evaluate("sessionStorage.length") == 1 and operator.evaluate("localStorage.length") == 0
    context.close()


def test_a_region_chip_on_a_photo_of_a_person_searches_that_garment(page: Page) -> None:
    person = next(shared_data("inshop_pairs", "img", "WOMEN", "Skirts").glob("*/*front*.jpg"))
    page.get_by_label("Choose a photo").set_input_files(person)
    bottom = page.get_by_role("group", name="Part of the photo to search").get_by_role("button", name="Bottom")
    expect(bottom).to_have_attribute("aria-pressed", "false")
    expect(page.locator(".query-photo .box")).not_to_have_count(0)
    with page.expect_response("**/v1/search") as answer:
        bottom.focus()
        page.keyboard.press("Enter")
    region = answer.value.json()["region"]
    assert region["garment"] == "lower"
    expect(page.get_by_role("button", name="Bottom")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("button", name="Bottom")).to_be_focused()  # the chips were made anew: focus stays on it
    expect(page.locator('.query-photo .box[data-label="Bottom"]')).to_have_count(1)  # which box is which
    chips = page.get_by_role("group", name="Part of the photo to search").get_by_role("button").all_inner_texts()
    order = ["Whole photo", "Top", "Bottom", "Full outfit", "Shoes"]
    assert chips == sorted(chips, key=order.index), chips  # in one order on every photo
    expect(page.get_by_text("Understood category:")).to_have_count(0)  # the test catalogue has no lower garments
    with page.expect_response("**/v1/search"):
        page.get_by_role("button", name="Top").click()
    expect(page.get_by_text("Understood category: Tshirts")).to_be_visible()  # the kinds of the garment picked
    with page.expect_response("**/v1/search") as answer:
        page.get_by_role("button", name="Remove Understood category: Tshirts").click()
    assert answer.value.json()["interpreted"] is None  # the crop alone ranks
    with page.expect_response("**/v1/search") as answer:
        page.get_by_role("button", name="Top").click()
    assert answer.value.json()["interpreted"] == {"category": "Tshirts"}  # picked again: it steers again
    with page.expect_response("**/v1/search") as answer:
        bottom.click()
    region = answer.value.json()["region"]
    chosen = page.locator(".query-photo .box.chosen")
    expect(chosen).to_have_count(1)
    image = page.get_by_role("img", name="The photo searched")
    area, drawn = image.bounding_box(), chosen.bounding_box()
    scale = area["width"] / image.evaluate("image => image.naturalWidth")
    assert abs(drawn["x"] - area["x"] - region["box"][0] * scale) < 2  # where the API placed it, on screen
    assert abs(drawn["width"] - (region["box"][2] - region["box"][0]) * scale) < 2
    with page.expect_response("**/v1/search") as answer:
        page.mouse.move(area["x"] + area["width"] * 0.25, area["y"] + area["height"] * 0.3)
        page.mouse.down()
        page.mouse.move(area["x"] + area["width"] * 0.75, area["y"] + area["height"] * 0.6, steps=5)
        page.mouse.up()
    dragged = answer.value.json()["region"]
    natural = image.evaluate("image => [image.naturalWidth, image.naturalHeight]")
    assert dragged["garment"] == "box" and abs(dragged["box"][0] - 0.25 * natural[0]) <= 2
    assert abs(dragged["box"][3] - 0.6 * natural[1]) <= 2
    expect(page.get_by_role("button", name="Your box")).to_have_attribute("aria-pressed", "true")


def test_a_box_is_searched_by_two_clicks_or_with_the_keyboard(page: Page) -> None:
    """Dragging was the only way to a box of one's own (WCAG 2.1.1 and 2.5.7): a click at each corner, or the
    photo focused, arrow keys to move the box, Shift with them to size it, Enter to search it."""
    person = next(shared_data("inshop_pairs", "img", "WOMEN", "Skirts").glob("*/*front*.jpg"))
    with page.expect_response("**/v1/search"):
        page.get_by_label("Choose a photo").set_input_files(person)
    image = page.get_by_role("img", name="The photo searched")
    area = image.bounding_box()
    width, height = image.evaluate("image => [image.naturalWidth, image.naturalHeight]")
    record_forms(page)
    page.mouse.click(area["x"] + area["width"] * 0.2, area["y"] + area["height"] * 0.5)
    expect(page.locator('.query-photo .box[data-label="Your box"]')).to_have_count(0)  # no box of the keyboard's
    assert page.evaluate("window.sentFields") == []  # one corner: nothing searched yet
    with page.expect_response("**/v1/search") as answer:
        page.mouse.click(area["x"] + area["width"] * 0.7, area["y"] + area["height"] * 0.9)
    clicked = answer.value.json()["region"]
    assert clicked["garment"] == "box"
    for got, want in zip(clicked["box"], [0.2 * width, 0.5 * height, 0.7 * width, 0.9 * height], strict=True):
        assert abs(got - want) <= 2, clicked
    photo_area = page.get_by_role("application", name="Search a box of the photo")  # its keys pass a screen reader
    photo_area.focus()
    expect(page.locator('.query-photo .box[data-label="Your box"]')).not_to_have_count(0)  # the keyboard's, shown
    for key in ("ArrowRight", "ArrowRight", "Shift+ArrowDown", "Shift+ArrowLeft"):
        page.keyboard.press(key)
    with page.expect_response("**/v1/search") as answer:
        page.keyboard.press("Enter")
    step_x, step_y = (
        js_round(width / 20),
        js_round(height / 20),
    )  # from the middle half: 2 steps right, 1 taller, 1 narrower
    x0, y0 = js_round(width / 4) + 2 * step_x, js_round(height / 4)
    moved = [x0, y0, js_round(3 * width / 4) + step_x, js_round(3 * height / 4) + step_y]
    assert answer.value.json()["region"]["box"] == moved
    expect(page.get_by_role("button", name="Your box")).to_have_attribute("aria-pressed", "true")
    expect(photo_area).to_be_focused()  # the keys go on moving the box searched
    expect(page.locator('.query-photo .box[data-label="Your box"]')).to_have_count(1)  # drawn once
    page.keyboard.press("ArrowLeft")  # from the box searched: moved back by a step
    with page.expect_response("**/v1/search") as answer:
        page.keyboard.press("Enter")
    assert answer.value.json()["region"]["box"] == [x0 - step_x, y0, moved[2] - step_x, moved[3]]
    page.get_by_role("button", name="Your box").focus()
    expect(page.locator(".query-photo .box.chosen")).to_have_count(1)  # the box searched stays when focus leaves


def js_round(value: float) -> int:
    """JavaScript's Math.round: halves go up (Python's round goes to the even one)."""
    return math.floor(value + 0.5)


def test_a_photo_with_no_person_offers_every_garment_to_say_what_it_shows(page: Page, tmp_path: Path) -> None:
    """A close-up, a back view or a packshot has no garments found: the page offers each garment the API takes, and
    the one picked searches the whole photo as that garment (steered to its kinds), until the whole photo is picked
    again."""
    circle = tmp_path / "red.jpg"
    circle.write_bytes(product_photo("red", "circle"))
    with page.expect_response("**/v1/search") as answer:
        page.get_by_label("Choose a photo").set_input_files(circle)
    assert answer.value.json()["regions"] == []
    shows = page.get_by_role("group", name="What the photo shows")
    expect(shows.get_by_role("button")).to_have_text(["Whole photo", "Top", "Bottom", "Full outfit", "Shoes"])
    expect(shows.get_by_role("button", name="Whole photo")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".query-photo .box")).to_have_count(0)  # no box drawn: the whole photo is the garment
    with page.expect_response("**/v1/search") as answer:
        shows.get_by_role("button", name="Top").click()
    assert answer.value.request.post_data_buffer is not None and b'name="garment"\r\n\r\nupper' in (
        answer.value.request.post_data_buffer
    )
    assert answer.value.json()["region"] is None and answer.value.json()["interpreted"] == {"category": "Tshirts"}
    expect(shows.get_by_role("button", name="Top")).to_have_attribute("aria-pressed", "true")
    expect(shows.get_by_role("button", name="Whole photo")).to_have_attribute("aria-pressed", "false")
    first_six = results(page).locator(".attrs").all_inner_texts()[:6]
    assert all(text.startswith("Tshirts") for text in first_six), first_six
    with page.expect_response("**/v1/search") as answer:
        shows.get_by_role("button", name="Whole photo").click()
    assert answer.value.json()["interpreted"] is None
    expect(results(page).first.locator(".title")).to_have_text("red circle")
    expect(shows.get_by_role("button", name="Top")).to_have_attribute("aria-pressed", "false")


def test_where_garments_are_not_looked_for_only_the_whole_photo_is_offered(
    browser: Browser, tmp_path: Path, tiny_registry: Path, indexed_catalogue: Path
) -> None:
    """A deployment with regions off (STYLEFINDER_REGIONS=false) finds no garments: the page offers none to pick, on
    a photo of a person or a packshot alike (naming one would be refused)."""
    settings = make_settings(tmp_path / "data", tiny_registry)
    settings.regions = False
    settings.allowed_image_roots = [indexed_catalogue]
    settings.public_search_key = True
    app = create_app(settings)
    with served(app) as url:
        app.state.runtime.pipeline.run(list(read_catalogue(indexed_catalogue)), ["tiny"])
        context = browser.new_context(base_url=url)
        shop = context.new_page()
        shop.goto("/")
        person = next(shared_data("inshop_pairs", "img", "WOMEN", "Skirts").glob("*/*front*.jpg"))
        for sent in (person, indexed_catalogue / "img" / "red-circle.jpg"):
            with shop.expect_response("**/v1/search") as answer:
                shop.get_by_label("Choose a photo").set_input_files(sent)
            assert answer.value.json()["garments"] == []
            expect(shop.locator("#regions").get_by_role("button")).to_have_text(["Whole photo"])
        context.close()


def test_a_photo_whose_person_is_framed_offers_their_garments_and_the_whole_photo_chip(
    page: Page, tmp_path: Path
) -> None:
    """A person small in a landscape photo: the API searches their frame as the whole photo; the page keeps calling
    that the whole photo, and offers the garments found on them."""
    shop = Image.open(next(shared_data("inshop_pairs", "img", "WOMEN", "Skirts").glob("*/*front*.jpg")))
    wide = Image.new("RGB", (shop.height * 16 // 9, shop.height), (235, 235, 235))
    wide.paste(shop, (wide.width - shop.width - 20, 0))
    street = tmp_path / "street.png"
    wide.save(street)
    with page.expect_response("**/v1/search") as answer:
        page.get_by_label("Choose a photo").set_input_files(street)
    assert answer.value.json()["region"]["garment"] == "person"
    whole = page.get_by_role("button", name="Whole photo")
    expect(whole).to_have_attribute("aria-pressed", "true")
    with page.expect_response("**/v1/search") as answer:
        page.get_by_role("button", name="Top").click()
    assert answer.value.json()["region"]["garment"] == "upper"
    expect(whole).to_have_attribute("aria-pressed", "false")
    with page.expect_response("**/v1/search") as answer:
        whole.click()
    assert answer.value.json()["region"]["garment"] == "person"
    expect(page.get_by_role("button", name="Whole photo")).to_have_attribute("aria-pressed", "true")


@pytest.fixture(scope="module")
def shop_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real gateway over the packaged default variant with a slice of the Myntra catalogue indexed: the first
    products of each master category (footwear, apparel, accessories)."""
    myntra = shared_data("myntra")
    rows = list(csv.DictReader((myntra / "metadata.csv").open(encoding="utf-8")))
    chosen = []
    for kind in ("Footwear", "Apparel", "Accessories"):
        chosen += [row for row in rows if row["masterCategory"] == kind][:SHOP_SLICE]
    items = [
        CatalogueItem(
            **{key: value for key, value in row.items() if key != "image"}, images=[str(myntra / row["image"])]
        )
        for row in chosen
    ]
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("shop"),
        redis_url=None,
        qdrant_url=None,
        embedder_url=None,
        device="cpu",
        allowed_image_roots=[myntra],
    )
    app = create_app(settings)
    with served(app) as url:
        outcomes = app.state.runtime.pipeline.run(items, app.state.runtime.served)
        assert {outcome.status for outcome in outcomes} == {"indexed"}
        yield url


def test_a_shoe_drawn_with_the_mouse_finds_footwear(browser: Browser, shop_gateway: str) -> None:
    """QMUL's test sketches of shoes, traced stroke by stroke with the mouse on the page's canvas."""
    context = browser.new_context(base_url=shop_gateway)
    shop = context.new_page()
    shop.goto("/")
    shop.get_by_text("About this model").click()
    card = httpx.get(f"{shop_gateway}/v1/models", headers={"Authorization": f"Bearer {public_key(shop_gateway)}"})
    default = next(model for model in card.json() if model["served"])
    shown = shop.locator("#card-fields")
    expect(shown).to_contain_text(f"Learning rate{figure(default['card']['lr'])}")
    for name, value in default["card"]["metrics"].items():
        expect(shown).to_contain_text(f"{name} {figure(value)}")
    shop.get_by_role("tab", name="Drawing").click()
    footwear = []
    for sketch in sorted(shared_data("qmul_sbir", "shoes", "test", "sketch").glob("*.png"))[:3]:
        shop.get_by_role("button", name="Clear drawing").click()
        draw(shop, traced(sketch), steps=1)
        with shop.expect_response("**/v1/search") as answer:
            shop.get_by_role("button", name="Search this drawing").click()
        expect(results(shop)).to_have_count(PAGE_SIZE)
        found = [hit["payload"].get("masterCategory") for hit in answer.value.json()["results"]]
        footwear.append(found.count("Footwear"))
    context.close()
    assert sum(footwear) >= 0.75 * 3 * PAGE_SIZE, footwear  # a third of the catalogue slice is footwear


def test_a_kind_guessed_from_a_photo_of_a_person_says_so_and_its_chip_takes_it_back(
    browser: Browser, shop_gateway: str
) -> None:
    """The default's kind guess, on photos of people: its chip says it was guessed from the photo (no words said
    it); removing it searches the photo unsteered, and the next photo is guessed again."""
    context = browser.new_context(base_url=shop_gateway)
    shop = context.new_page()
    shop.goto("/")
    people = sorted(shared_data("inshop_pairs", "img").glob("*/*Tees*/*/*front.jpg"))[:4]  # people in t-shirts
    steered = []
    for person in people:
        with shop.expect_response("**/v1/search") as answer:
            shop.get_by_label("Choose a photo").set_input_files(person)
        found = answer.value.json()
        if found["guessed"]:
            steered.append(person)
            assert found["guessed"] == ["category"]
            kinds = found["interpreted"]["category"]
            chip = f"Guessed category from your photo: {kinds if isinstance(kinds, str) else ', '.join(kinds)}"
            expect(shop.get_by_text(chip)).to_be_visible()
            expect(shop.get_by_text("Understood category:")).to_have_count(0)
            with shop.expect_response("**/v1/search") as answer:
                shop.get_by_role("button", name=f"Remove {chip}").click()
            assert answer.value.json()["interpreted"] is None and answer.value.json()["guessed"] == []
            expect(shop.get_by_text("Guessed category from your photo:")).to_have_count(0)
    context.close()
    assert len(steered) >= 2, steered  # the photo after a guess taken back was guessed again


def public_key(gateway: str) -> str:
    return httpx.get(f"{gateway}/v1/public-key").json()["key"]


def figure(value: float) -> str:
    """A card's number as the page writes it: four significant digits, a whole number without a decimal point (as
    JavaScript's String(1.0) is "1")."""
    rounded = float(f"{value:.4g}")
    return str(int(rounded)) if rounded.is_integer() else repr(rounded)


def traced(sketch: Path) -> list[list[tuple[float, float]]]:
    """A drawing's strokes as mouse paths (fractions of the canvas): the outlines of its dark pixels."""
    ink = np.asarray(Image.open(sketch).convert("L")) < 128
    outlines, _ = cv2.findContours(ink.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    height, width = ink.shape
    side = max(height, width)
    return [
        [(float(x) / side, float(y) / side) for x, y in cv2.approxPolyDP(outline, 1.0, False)[:, 0]]
        for outline in outlines
        if len(outline) > 2
    ]
