"""The gallery of docs/gallery/ (drawn by scripts/make_gallery.py): every picture the script writes is committed,
small, and shown in the README and on the docs site (checked on the files; the script itself is not run here)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GALLERY = ROOT / "docs" / "gallery"


def _written_by_script() -> set[str]:
    return set(re.findall(r'OUT / "([\w.]+\.png)"', (ROOT / "scripts" / "make_gallery.py").read_text()))


def test_every_picture_the_script_writes_is_committed_and_small():
    names = _written_by_script()
    assert names == {"methods.png", "keras_vs_pytorch.png", "sign_vs_input_bias.png", "eeg.png", "frequency.png",
                     "ecg_12lead.png", "ecg_lstm.png", "transformer_faithfulness.png", "text_faithfulness.png"}
    assert {p.name for p in GALLERY.glob("*.png")} == names  # no stale picture either
    for name in names:
        data = (GALLERY / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        assert 10_000 < len(data) < 200_000, (name, len(data))


def test_readme_and_docs_show_the_gallery():
    readme = (ROOT / "README.md").read_text()
    page = (ROOT / "docs" / "gallery.md").read_text()
    top = readme[:readme.index("\n## ")]  # before the first section: near the top
    for name in ("methods.png", "keras_vs_pytorch.png", "sign_vs_input_bias.png"):
        assert f"docs/gallery/{name}" in top, name
    for name in _written_by_script():
        assert f"](gallery/{name})" in page, name
    assert "scripts/make_gallery.py" in top and "scripts/make_gallery.py" in page
    assert re.search(r"^  - Gallery: gallery\.md$", (ROOT / "mkdocs.yml").read_text(), re.MULTILINE)
    assert "](gallery/methods.png)" in (ROOT / "docs" / "index.md").read_text()
