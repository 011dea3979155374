"""`refusalscope view`: rows joined from real run folders, the static site, and the page in
headless Chromium (filters, heatmap links, escaping, 10,000 rows)."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from view_fixtures import (CELL_BIG, CELL_SMALL, SCRIPT, ShortScorer, chrome, generate_run,
                           isolated, screenshot, score, tiny_study, wait_for)

from refusalscope.view import build_site, collect
from refusalscope.view.rows import cells
from refusalscope.view.site import embed_json

RUNNER = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("study")
    with isolated(root):
        return tiny_study(root)


@pytest.fixture(scope="module")
def driver():  # type: ignore[no-untyped-def]
    d = chrome()
    yield d
    d.quit()


def test_rows_join_scores_baseline_and_cells(study: dict[str, Path]) -> None:
    data = collect([study["study"]])
    assert len(data.rows) == 18 and data.scorers == ["heuristic", "short"]
    big = [r for r in data.rows if r["cell"] == CELL_BIG]
    assert [r["id"] for r in big] == [f"p{i:03d}" for i in range(6)]  # id order, not batch order
    assert big[0]["scores"]["heuristic"]["refused"] is True and big[0]["main"] == "short"
    assert big[5]["response"] == SCRIPT
    assert all(0.0 <= r["rd"] <= 2.0 for r in big)  # RD from the drift file scoring wrote
    assert big[0]["ce"] is not None and big[0]["p"] == 0.9  # the main scorer's P(refused)
    assert data.runs[big[0]["run"]]["baseline"] == study["base"].name
    # "Sure." is refused by the short scorer (< 40 chars) and not by the heuristic
    small = {r["id"]: r for r in data.rows if r["cell"] == CELL_SMALL}
    assert small["p005"]["agree"] is False and small["p000"]["agree"] is True
    by = {(c["cell"], c["scorer"]): c for c in cells(data.rows)}
    assert by[("none", "heuristic")]["rrr"] == 1.0
    assert by[(CELL_BIG, "heuristic")]["rrr"] == pytest.approx(1 / 6)
    assert by[(CELL_SMALL, "short")]["rrr"] == pytest.approx(4 / 6)


def test_embedded_json_cannot_close_the_script() -> None:
    text = embed_json({"r": "</script><script>alert(1)</script>&"})
    assert "<" not in text and ">" not in text and "&" not in text


def test_site_is_self_contained(study: dict[str, Path], tmp_path: Path) -> None:
    index, _ = build_site([study["study"]], tmp_path / "site")
    html = index.read_text(encoding="utf-8")
    assert "<script>document.title" not in html  # the response is only in escaped JSON
    assert "http://" not in html and "https://" not in html and " src=" not in html
    assert "No report yet" in html


def test_cli_view_writes_and_refuses_bad_input(study: dict[str, Path], tmp_path: Path) -> None:
    from refusalscope.cli.app import app

    res = RUNNER.invoke(app, ["view", str(study["study"]), "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert "18 responses from 3 runs" in res.output
    res = RUNNER.invoke(app, ["view", str(study["study"]), "--out", str(tmp_path / "s")])
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = RUNNER.invoke(app, ["view", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "not a run" in res.output


def test_static_server_serves_on_loopback(study: dict[str, Path], tmp_path: Path) -> None:
    import threading

    from refusalscope.view.serve import static_server

    index, _ = build_site([study["small"]], tmp_path / "site")
    server = static_server(index.parent, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        body = urllib.request.urlopen(f"http://{host}:{port}/index.html", timeout=5).read()
        assert body == index.read_bytes()
    finally:
        server.shutdown()
        server.server_close()


def _count(driver: Any) -> int:
    return int(driver.find_element("id", "count").get_attribute("data-n"))


def test_browser_filters_change_row_count(driver: Any, study: dict[str, Path],
                                          tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import Select

    index, _ = build_site([study["study"]], tmp_path / "site")
    driver.get(index.as_uri() + "#browse")
    wait_for(driver, lambda d: _count(d) == 18)
    Select(driver.find_element("id", "f-cell")).select_by_value(CELL_SMALL)
    wait_for(driver, lambda d: _count(d) == 6)
    Select(driver.find_element("id", "f-outcome")).select_by_value("refused")
    Select(driver.find_element("id", "f-scorer")).select_by_value("heuristic")
    wait_for(driver, lambda d: _count(d) == 3)
    Select(driver.find_element("id", "f-outcome")).select_by_value("")
    Select(driver.find_element("id", "f-agree")).select_by_value("disagree")
    wait_for(driver, lambda d: _count(d) == 1)
    assert driver.find_element("css selector", "#rows .row").get_attribute("data-id") == "p005"


def test_browser_heatmap_link_lands_on_its_rows(driver: Any, study: dict[str, Path],
                                                tmp_path: Path) -> None:
    index, _ = build_site([study["study"]], tmp_path / "site")
    driver.get(index.as_uri())
    screenshot(driver, "study_page")
    links = driver.find_elements("css selector", "#heat a")
    link = next(a for a in links if CELL_BIG in a.get_attribute("href").replace("+", " ")
                .replace("%3D", "="))
    assert link.text == "0.17"  # 1 of 6 refused by the main scorer's counterpart
    link.click()
    wait_for(driver, lambda d: d.find_element("id", "browse-view").is_displayed())
    wait_for(driver, lambda d: _count(d) == 6)
    cards = driver.find_elements("css selector", "#rows .row")
    assert {c.get_attribute("data-cell") for c in cards} == {CELL_BIG}
    assert len(cards) == 6
    screenshot(driver, "browser_one_cell")


def test_browser_escapes_and_collapses(driver: Any, study: dict[str, Path], tmp_path: Path) -> None:
    index, _ = build_site([study["study"]], tmp_path / "site")
    driver.get(index.as_uri() + "#browse?cell=" + CELL_BIG.replace(" ", "%20")
               .replace("=", "%3D") + "&text=pwned")
    wait_for(driver, lambda d: _count(d) == 1)
    card = driver.find_element("css selector", "#rows .row")
    assert driver.title.startswith("refusalscope")  # the response's script never ran
    assert card.find_elements("css selector", "b, script") == []
    pre = card.find_element("css selector", "details pre")
    assert pre.get_attribute("textContent") == SCRIPT
    assert card.find_element("css selector", "details").get_attribute("open") is None
    assert not pre.is_displayed()  # behind the content warning until opened
    card.find_element("css selector", "summary").click()
    wait_for(driver, lambda d: pre.is_displayed())
    # the baseline's refusal of the same prompt is shown beside it, not collapsed
    assert "sorry" in card.find_elements("css selector", ".pair > div")[1].text


def test_browser_pages_10000_rows(driver: Any, tmp_path: Path) -> None:
    from refusalscope.scoring.heuristic import HeuristicScorer

    responses = [("I'm sorry, I can't." if i % 3 else f"Sure, answer {i}: do this then that.")
                 for i in range(10_000)]
    run = generate_run(tmp_path / "runs", "tiny-b", responses, bulk=True)
    score(run, HeuristicScorer(), ShortScorer())
    index, data = build_site([run], tmp_path / "site")
    assert len(data.rows) == 10_000
    t0 = time.perf_counter()
    driver.get(index.as_uri() + "#browse")
    wait_for(driver, lambda d: _count(d) == 10_000, timeout=30)
    loaded = time.perf_counter() - t0
    assert len(driver.find_elements("css selector", "#rows .row")) == 50
    t0 = time.perf_counter()
    driver.find_element("id", "next").click()
    wait_for(driver, lambda d: "page 2 of 200" in d.find_element("id", "count").text)
    assert driver.find_element("css selector", "#rows .row").get_attribute("data-id") == "p00050"
    assert time.perf_counter() - t0 < 2.0 and loaded < 20.0, (loaded,)


def test_report_markdown_is_escaped_and_images_listed() -> None:
    from refusalscope.view.markdown import to_html

    md = ("# Study `x<y>`\n\n## Findings\n\n1. **Size.** RRR <script>alert(1)</script> rises\n"
          "   over sizes.\n2. second\n\n| model | rrr |\n|---|---|\n| a<b | 0.5 |\n\n"
          "![rrr](figures/rrr/rrr_heatmap.png)\n![x](../../etc/passwd.png)\n\n> warning &\n")
    html, images = to_html(md, prefix="report/")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<h1>Study <code>x&lt;y&gt;</code></h1>" in html
    assert "<li><strong>Size.</strong> RRR &lt;script&gt;alert(1)&lt;/script&gt; rises over " \
           "sizes.</li>" in html
    assert "<td>a&lt;b</td><td>0.5</td>" in html
    assert images == ["figures/rrr/rrr_heatmap.png"]  # a path leaving the report is not an image
    assert '<img alt="rrr" src="report/figures/rrr/rrr_heatmap.png"' in html
    assert "<blockquote>warning &amp;</blockquote>" in html


def test_browser_shows_report_findings_and_figures(driver: Any, study: dict[str, Path],
                                                   tmp_path: Path) -> None:
    import shutil

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    copy = tmp_path / "study"
    shutil.copytree(study["study"], copy)
    report = copy / "reports" / "20260101T000000Z"
    (report / "figures").mkdir(parents=True)
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0])
    fig.savefig(report / "figures" / "rrr.png", dpi=50)
    plt.close(fig)
    (report / "report.md").write_text("# Study `tiny`\n\n## Findings\n\n1. **Size.** RRR falls "
                                      "<b>fast</b>.\n\n![rrr](figures/rrr.png)\n\n"
                                      "| model | attack | n_data | steps | scorer | rrr |\n"
                                      "|---|---|---|---|---|---|\n"
                                      "| tiny-a | lora | 4 | 8 | heuristic | 0.167 |\n")
    index, data = build_site([copy], tmp_path / "site")
    assert data.report == report and (index.parent / "report/figures/rrr.png").is_file()
    driver.get(index.as_uri())
    findings = driver.find_element("css selector", "#report li")
    assert findings.text == "Size. RRR falls <b>fast</b>."
    img = driver.find_element("css selector", "#report img")
    driver.execute_script("arguments[0].scrollIntoView()", img)
    wait_for(driver, lambda d: d.execute_script("return arguments[0].naturalWidth", img) > 0)
    cells_ = driver.find_elements("css selector", "#report table.md td a")
    assert [a.text for a in cells_] == ["tiny-a", "lora", "4", "8", "heuristic", "0.167"]
    driver.execute_script("arguments[0].click()", cells_[-1])  # a results-table cell's rows
    wait_for(driver, lambda d: _count(d) == 6)
    assert {c.get_attribute("data-cell")
            for c in driver.find_elements("css selector", "#rows .row")} == {CELL_BIG}
    assert "scorer=heuristic" in driver.current_url
