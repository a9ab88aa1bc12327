"""The contact sheet: a glance at a few test players, titled so it is never taken for real data."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from reid.synthetic.palette import FONTS, load_font
from reid.synthetic.planning import Plan


def contact_sheet(root: Path, p: Plan, rows: int = 8, columns: int = 8, tile: int = 112) -> Image.Image:
    """Test players, one a row: the query (frame 00) then gallery frames, labelled synthetic."""
    test = [s for s in p.sequences if s.split == "test"]
    people = [(s, person) for s in test[:3] for person in s.people[: -(-rows // min(3, len(test)))]][:rows]
    cell_w, label_w, title_h = int(tile * 0.62), 110, 44
    sheet = Image.new("RGB", (label_w + columns * cell_w, title_h + len(people) * (tile + 4)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 4), f"SYNTHETIC data: reid/synthetic.py, size={p.size}, seed={p.seed}", fill=(180, 0, 0),
              font=load_font(FONTS[0], 15))
    draw.text((6, 24), "one test player a row: the query (frame 00, boxed), then gallery frames", fill=(0, 0, 0),
              font=load_font(FONTS[3], 12))
    for r, (seq, person) in enumerate(people):
        y = title_h + r * (tile + 4)
        draw.text((6, y + tile // 2), f"seq {seq.number}\nplayer {person.player}", fill=(0, 0, 0),
                  font=load_font(FONTS[3], 13), anchor="lm")
        for c, (_, path) in enumerate(person.files[:columns]):
            with Image.open(root / path) as img:
                img.thumbnail((cell_w - 4, tile))
                sheet.paste(img, (label_w + c * cell_w + (cell_w - img.width) // 2, y + tile - img.height))
            if c == 0:
                draw.rectangle([label_w + 1, y - 1, label_w + cell_w - 2, y + tile], outline=(0, 160, 0), width=2)
    return sheet
