"""hubmod app: the web page, driven in a real headless Chromium (Debian's chromium and chromium-driver through
Selenium) against an embedded hub that a tiny split filled; and the page's guards, without a browser."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest
from conftest import free_port
from typer.testing import CliRunner

import hubmod
from hubmod.app import check_port, compose_model, module_card, sample_image, serve
from hubmod.cli import app
from hubmod.errors import HubmodError
from hubmod.hub import get_hub

ARTIFACTS = Path(os.environ.get("HUBMOD_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))


def _publish(vgg_split, classes=("Bag", "Sneaker", "Trouser")) -> None:
    for m in vgg_split.modules:
        if m.class_name in classes:
            m.push_to_hub(f"alice/vgg-{m.class_name.lower()}", hub="local")


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("this test drives Debian's chromium and chromium-driver: apt-get install chromium "
                    "chromium-driver (bash scripts/setup.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1800"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def _wait(condition, what: str, timeout: float = 60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - the page is still rendering
            value = None
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"the page never showed {what}")


@pytest.mark.browser
def test_the_page_finds_composes_and_predicts_in_headless_chromium(vgg_split, fmnist_test, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By

    _publish(vgg_split)
    reference = hubmod.compose_from_hub(["Bag", "Sneaker"], hub="local")
    bags = [i for i in range(200) if fmnist_test.class_names[int(fmnist_test.labels[i])] == "Bag"]
    index = next(i for i in bags if reference.predict(fmnist_test.images[i : i + 1]) == ["Bag"])
    image = tmp_path / "bag.png"
    Image.fromarray(fmnist_test.images[index][0].numpy()).save(image)

    port = free_port()
    page = serve("local", "127.0.0.1", port, block=False)
    driver = _browser()
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        css = driver.find_element
        _wait(lambda: css(By.CSS_SELECTOR, "#find-classes textarea"), "the find box").send_keys("Bag")
        css(By.ID, "find-button").click()
        _wait(lambda: "alice/vgg-bag" in css(By.ID, "find-results").text, "the Bag module in the find table")
        css(By.CSS_SELECTOR, "#card-repo textarea").send_keys("alice/vgg-bag")
        css(By.ID, "card-button").click()
        _wait(lambda: "kept" in css(By.ID, "card-markdown").text.lower(), "the module's card")

        next(b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if "Compose" in b.text).click()
        box = _wait(lambda: css(By.CSS_SELECTOR, "#compose-classes textarea"), "the compose box")
        box.send_keys("Bag, Unicorn")
        css(By.ID, "compose-button").click()
        _wait(lambda: "no module of class 'Unicorn'" in css(By.ID, "compose-status").text, "the one-line error")
        box.clear()
        box.send_keys("Bag, Sneaker")
        css(By.ID, "compose-button").click()
        _wait(lambda: "Composed 2 classes" in css(By.ID, "compose-status").text, "the composition")

        css(By.CSS_SELECTOR, "#predict-image input[type=file]").send_keys(str(image))
        _wait(lambda: css(By.CSS_SELECTOR, "#predict-image img"), "the uploaded image")
        css(By.ID, "predict-button").click()
        label = _wait(lambda: css(By.CSS_SELECTOR, "#predict-label textarea").get_attribute("value"),
                      "a predicted class")
        assert label == "Bag"
        _wait(lambda: "Sneaker" in css(By.ID, "predict-scores").text or
              css(By.CSS_SELECTOR, "#predict-scores canvas, #predict-scores svg"), "the score chart")
        css(By.CSS_SELECTOR, "#publish-name textarea").send_keys("me/bag-or-sneaker")
        css(By.ID, "publish-button").click()
        _wait(lambda: "published" in css(By.ID, "publish-status").text, "the publish confirmation")
        assert hubmod.ComposedClassifier.from_pretrained("me/bag-or-sneaker", hub="local").class_names == \
            ["Bag", "Sneaker"]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "app.png"))
    finally:
        driver.quit()
        page.close()


def test_the_page_reads_nothing_outside_the_hub(vgg_split, tmp_path):
    _publish(vgg_split, ("Bag", "Sneaker"))
    hub = get_hub("local")
    secret = tmp_path / "secret"
    secret.mkdir()
    for name in (str(secret), "../etc", "~/data", "./folder", "/etc/passwd"):
        with pytest.raises(HubmodError, match="not files|invalid repo id"):
            compose_model(hub, "Bag, Sneaker", name, 5, 5)
        with pytest.raises(HubmodError, match="not files|invalid repo id"):
            sample_image(name)
    with pytest.raises(HubmodError, match="invalid repo id"):
        module_card(hub, "../../etc/passwd")
    with pytest.raises(HubmodError, match="either classes or module repos"):
        compose_model(hub, "alice/vgg-bag, Sneaker", "", 5, 5)
    model = compose_model(hub, "alice/vgg-bag, alice/vgg-sneaker", "", 5, 5)  # module repos, from this hub only
    assert model.class_names == ["Bag", "Sneaker"]
    picture, label = sample_image("fashion-mnist", seed=0)
    assert picture.shape == (28, 28) and label in model.class_names + ["T-shirt/top", "Trouser", "Pullover", "Dress",
                                                                        "Coat", "Sandal", "Shirt", "Ankle boot"]
    text, groups = module_card(hub, "alice/vgg-bag")
    assert "Bag" in text and groups and all(0 < g["channels"] <= g["of"] for g in groups)


def test_a_port_in_use_is_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(HubmodError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_port("127.0.0.1", port)
        out = CliRunner().invoke(app, ["app", "--port", str(port), "--hub", "local"])
    assert out.exit_code != 0 and f"cannot listen on 127.0.0.1:{port}" in out.output and "Traceback" not in out.output
