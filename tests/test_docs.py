"""The documentation stays true: the model zoo page is the manifest's, every page is reachable
from the README, links between pages resolve, and the README stays a page for users."""

import re
from pathlib import Path

from kxnet.models.zoo import model_zoo_markdown

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def test_model_zoo_page_is_generated_from_the_manifest():
    assert (DOCS / "model-zoo.md").read_text() == model_zoo_markdown(), \
        "docs/model-zoo.md is stale: kxnet models --markdown > docs/model-zoo.md"


def test_every_docs_page_is_linked_from_the_readme():
    readme = (REPO / "README.md").read_text()
    linked = set(re.findall(r"\(docs/([\w.-]+\.md)", readme))
    pages = {p.name for p in DOCS.glob("*.md")}
    # pages reached through another page (the methods' own pages, the equal-budget table)
    via = {name for p in DOCS.glob("*.md") if p.name in linked for name in re.findall(r"\]\(([\w.-]+\.md)", p.read_text())}
    assert pages <= linked | via, f"not reachable from the README: {sorted(pages - linked - via)}"


def test_history_pages_are_linked_from_the_readme():
    """docs/history/ holds the lab notebook (how the weights came to be), apart from the user docs."""
    readme = (REPO / "README.md").read_text()
    pages = {p.name for p in (DOCS / "history").glob("*.md")}
    assert pages, "docs/history/ is empty"
    assert pages <= set(re.findall(r"\(docs/history/([\w.-]+\.md)", readme))


def test_links_between_pages_resolve():
    for page in [REPO / "README.md", *DOCS.glob("*.md"), *DOCS.glob("history/*.md"), REPO / "benchmarks" / "README.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if target.startswith("http"):
                continue
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def test_readme_is_short_and_starts_with_the_two_setup_lines():
    text = (REPO / "README.md").read_text()
    assert len(text.encode()) < 15_000
    lines = text.splitlines()
    assert lines[0] == "```bash" and "kxnet sr examples/chart_x4.png" in lines[1] and "pytest" in lines[2]
    assert "KXNET.md" not in text and "BASELINES.md" not in text


def _readme_example_kernel():
    """The README's statement of the bundled example's kernel: ``(σ₁, σ₂, θ)`` and its text."""
    text = (REPO / "README.md").read_text()
    m = re.search(r"known kernel \((σ₁ ([\d.]+) / σ₂ ([\d.]+) px at θ ([\d.]+)°), `examples/chart_x4_kernel.npy`\)",
                  " ".join(text.split()))
    assert m, "README: the example's kernel is no longer stated as 'σ₁ A / σ₂ B px at θ C°'"
    return float(m[2]), float(m[3]), float(m[4]), m[1]


def test_the_readme_states_the_example_kernel_as_its_file_fits():
    """One convention (kxnet.metrics.FIT_CONVENTION: σ₁ ≥ σ₂, θ of the σ₁ axis, clockwise from x):
    what the README says of examples/chart_x4_kernel.npy is the project's Gaussian fit of it, in
    the words the summary line and the demo use."""
    import numpy as np

    from kxnet.metrics import fit_label, gaussian_fit

    s1, s2, theta, stated = _readme_example_kernel()
    fit = gaussian_fit(np.load(REPO / "examples" / "chart_x4_kernel.npy"))
    assert s1 >= s2
    assert abs(fit["sigma_x"] - s1) <= 0.05 and abs(fit["sigma_y"] - s2) <= 0.05
    d = abs(fit["theta_deg"] - theta) % 180
    assert min(d, 180 - d) <= 1.0, (fit["theta_deg"], theta)
    assert fit_label(fit) == stated
    for page in ("docs/protocol.md", "scripts/make_example.py"):     # where the generator's (1.2, 2.6, 30°) is explained
        assert stated in " ".join((REPO / page).read_text().split()), page
