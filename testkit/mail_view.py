"""A mail as a person sees it: headless Chromium (Debian `chromium`) on the HTML part, with
its inline images resolved as a mail client resolves them."""

from __future__ import annotations

import base64
import subprocess
from email.message import EmailMessage
from pathlib import Path

from PIL import Image

from dockpulse_stack.host_packages import ensure_debian_packages
from testkit.local_stack import binary

# matplotlib's first colour (an alert's series) and the threshold's dashed red.
SERIES_BLUE, THRESHOLD_RED = (31, 119, 180), (204, 0, 0)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--force-color-profile=srgb",
    "--hide-scrollbars",
]


def chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium (Debian `chromium`, installed when missing) with its own profile;
    its stdout."""
    ensure_debian_packages({"chromium": "chromium"})
    result = subprocess.run(
        [binary("chromium"), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def html_with_inline_images(message: EmailMessage) -> str:
    """The HTML part with every `cid:` reference replaced by its related part (a data: URI),
    which is what a mail client does."""
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    text = html_part.get_content()
    related = message.get_body(preferencelist=("related",))
    assert related is not None, "the HTML part is not multipart/related"
    for part in related.iter_parts():
        if part.get_content_maintype() == "image":
            cid = part["Content-ID"].strip("<>")
            data = base64.b64encode(part.get_content()).decode()
            text = text.replace(f"cid:{cid}", f"data:{part.get_content_type()};base64,{data}")
    return text


def find_image(screenshot: Image.Image, picture: Image.Image) -> tuple[int, int] | None:
    """Where `picture` appears pixel for pixel in `screenshot` (found by its middle row, then
    compared whole: a flat graph's middle row may also match one of its grid lines), or where
    its middle row first appears, or None."""
    row = picture.height // 2
    needle = picture.crop((0, row, picture.width, row + 1)).tobytes()
    whole = picture.tobytes()
    first = None
    for y in range(screenshot.height):
        line = screenshot.crop((0, y, screenshot.width, y + 1)).tobytes()
        x = line.find(needle)
        while x != -1:
            if x % 3 == 0:
                left, top = x // 3, y - row
                first = first or (left, top)
                box = (left, top, left + picture.width, top + picture.height)
                if top >= 0 and screenshot.crop(box).tobytes() == whole:
                    return left, top
            x = line.find(needle, x + 1)
    return first


def colour_pixels(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 40) -> int:
    """How many pixels of `image` are within `tolerance` of `colour`."""
    return sum(
        count
        for count, rgb in image.getcolors(1 << 20)
        if sum(abs(a - b) for a, b in zip(rgb, colour, strict=True)) <= tolerance
    )


def chart_as_shown(
    message: EmailMessage, chart: Image.Image, folder: Path, window: str = "760,900"
) -> tuple[Image.Image, Path]:
    """The mail's HTML part (written as `folder`/mail.html) in headless Chromium, its inline
    images resolved: the part of the screenshot where `chart` shows (asserted whole and at its
    own size), and the screenshot (`folder`/mail.png)."""
    page = folder / "mail.html"
    page.write_text(html_with_inline_images(message))
    shot = folder / "mail.png"
    chromium(folder, f"--screenshot={shot}", f"--window-size={window}", page.as_uri())
    screenshot = Image.open(shot).convert("RGB")
    where = find_image(screenshot, chart)
    assert where is not None, "the chart is not in the screenshot (image not resolved?)"
    left, top = where
    shown = screenshot.crop((left, top, left + chart.width, top + chart.height))
    assert shown.tobytes() == chart.tobytes(), "the chart is not shown whole at its own size"
    return shown, shot
