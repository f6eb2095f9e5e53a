"""The Dagster UI in a real browser: Debian's chromium driven by Playwright, against
``dagster dev`` on the project's instance, with real runs of the real job.

One ``dagster dev`` serves the whole module (own process group, killed as a group: it ignores
SIGTERM for a while), on free loopback ports, on the one-machine instance ``amr-dagster``
creates under ``AMR_HOME`` (here a fresh folder under tmp; SQLite, telemetry off), loading the project's code location with fast resource config (``tests/ui/fast_definitions.py``:
one sample, small token budgets) and the deployment's values in its environment (the embedded
Gemma 3 270M through llama.cpp, the local bubblewrap sandbox), tiny seed files. In order:

1. the asset graph shows every stage;
2. the seed stages of a registered partition are materialized with the UI's Materialize
   button, the run succeeds, and the asset page's row counts are those of the stored frame;
3. the seed sensor is running, a file dropped into the watched folder becomes a partition and
   a run of the whole pipeline that succeeds, and the dataset card's figures render in the UI;
4. a backfill over two partitions launched from the UI completes (status "Succeeded").

Each step asserts the page's state and only then saves a screenshot, into
``$AMR_UI_SCREENSHOTS`` (default ``test-artifacts/ui-browser`` in the repository, with
``dagster dev``'s log), which the test names in pytest's summary so CI can keep it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
# Every asset of the code location, in graph order (README "The asset graph").
STAGES = [
    "seed_files", "seed_functions", "filtered_seeds", "deduped_seeds", "seed_concepts", "instructions", "responses",
    "executed_responses", "decomposed_modules", "library_candidates", "module_library", "evolved_responses",
    "verified_pairs", "instruction_dataset", "humaneval_eval",
]
SEED_STAGES = ["seed_functions", "filtered_seeds", "deduped_seeds"]
# "Materialize all (N)…" (N: the materializable assets in view). The button's accessible name
# starts with its icon's label ("materialization Materialize all (14)…"), hence no "^".
MATERIALIZE_ALL = re.compile(r"Materialize all \(\d+\)")
# The deployment's values (read where a step runs): the embedded engine and the local sandbox.
# The fast generation settings are the code location's resource config (tests/ui/fast_definitions.py).
FAST_ENV = {"AMR_LLM_BACKEND": "llama_cpp", "AMR_SANDBOX_BACKEND": "local"}
WORKSPACE = """load_from:
  - python_module:
      module_name: tests.ui.fast_definitions
      location_name: amr_dagster
      working_directory: {root}
"""

SEEDS = {
    "alpha": '''
        def mean_of(values: list[float]) -> float:
            """Return the arithmetic mean of values, or 0.0 when the list of values is empty."""
            if not values:
                return 0.0
            return sum(values) / len(values)


        def initials(full_name: str) -> str:
            """Return the upper-case first letter of every word of full_name, joined without spaces."""
            return "".join(part[0].upper() for part in full_name.split())
    ''',
    "gamma": '''
        def word_lengths(sentence: str) -> list[int]:
            """Return the length of every whitespace-separated word of sentence, in the order they appear."""
            return [len(word) for word in sentence.split()]
    ''',
    "delta": '''
        def running_total(numbers: list[int]) -> list[int]:
            """Return the cumulative sums of numbers: element i is the sum of the first i + 1 numbers."""
            out = []
            total = 0
            for n in numbers:
                total += n
                out.append(total)
            return out
    ''',
    "dropped": '''
        def count_words(text: str) -> int:
            """Return how many whitespace-separated words the string text contains, zero when it is blank."""
            return len(text.split())
    ''',
}

pytestmark = [pytest.mark.slow, pytest.mark.llm]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_seed(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}_funcs.py"
    path.write_text(textwrap.dedent(SEEDS[name]).lstrip("\n"))
    return path


class Site:
    """The running ``dagster dev`` and the folders it works in."""

    def __init__(self, base: Path) -> None:
        self.base = base
        # The project's one-machine layout under AMR_HOME: the Dagster instance `amr-dagster`
        # creates (<AMR_HOME>/dagster, SQLite, telemetry off) and the data root (<AMR_HOME>/data).
        self.amr_home = base / "amr"
        self.home, self.data = self.amr_home / "dagster", self.amr_home / "data"
        self.seeds, self.registered = base / "seeds", base / "registered"
        for p in (self.data, self.seeds, self.registered):
            p.mkdir(parents=True, exist_ok=True)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AMR_", "DAGSTER_"))},
            **FAST_ENV,
            "PYTHONPATH": str(ROOT),
            "AMR_HOME": str(self.amr_home),
            "AMR_DATA_DIR": str(self.data),
            "AMR_SEEDS_DIR": str(self.seeds),
        }
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = base / "dagster_dev.log"
        self.proc: subprocess.Popen | None = None
        self.pgid: int | None = None
        self.keys: dict[str, str] = {}  # seed name -> partition key of the registered batches

    def log_tail(self, chars: int = 4000) -> str:
        """The end of ``dagster dev``'s log (webserver, daemon and run output), for failure messages."""
        return f"dagster dev log ({self.log}), last {chars} characters:\n" + self.log.read_text(errors="replace")[-chars:]

    def register(self, name: str) -> str:
        """Register a seed file as a batch and add its partition to the project's instance, the
        way ``amr-dagster run --seeds`` does (which also creates that instance on first use),
        outside the sensor's folder."""
        code = (
            "import sys, dagster as dg; from pathlib import Path; "
            "from amr_dagster.cli import _dagster_home; "
            "from amr_dagster.seeds.batches import BatchRegistry; "
            "home = _dagster_home(); "
            "b = BatchRegistry().register(Path(sys.argv[1])); "
            "dg.DagsterInstance.get().add_dynamic_partitions('seed_batches', [b.key]); print(home); print(b.key)"
        )
        path = _write_seed(self.registered, name)
        out = subprocess.run([sys.executable, "-c", code, str(path)], env=self.env, cwd=ROOT, capture_output=True, text=True, check=True)
        home, key = out.stdout.strip().splitlines()[-2:]
        assert Path(home) == self.home.resolve(), (home, self.home)
        return key

    def workspace(self) -> Path:
        """The project's code location with the fast resource config (tests/ui/fast_definitions.py)."""
        path = self.base / "workspace.yaml"
        path.write_text(WORKSPACE.format(root=ROOT))
        return path

    def start(self) -> None:
        dagster = Path(sys.executable).parent / "dagster"
        self.proc = subprocess.Popen(
            [str(dagster), "dev", "-w", str(self.workspace()), "-h", "127.0.0.1", "-p", str(self.port)],
            # README, "Opening the UI": DAGSTER_HOME=<AMR_HOME>/dagster dagster dev -w ...
            cwd=ROOT, env={**self.env, "DAGSTER_HOME": str(self.home)},
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.pgid = self.proc.pid  # its own session: the group id is its pid
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(1)
        raise RuntimeError(f"dagster dev did not answer in 180 s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """End the whole process group (webserver, daemon, code server, run workers)."""
        if self.proc is None or self.pgid is None:
            return
        try:  # the group outlives a dead ``dagster dev`` (its daemon and run workers): end it anyway
            os.killpg(self.pgid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=15)


@pytest.fixture(scope="module")
def site(shots):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: install Debian's chromium (a Playwright browser download cannot work here)")
    # A private folder, not pytest's numbered tmp: other pytest sessions of the same user prune
    # those while this module's dagster dev still writes there.
    base = Path(tempfile.mkdtemp(prefix="amr-ui-browser-"))
    s = Site(base)
    try:
        s.keys = {name: s.register(name) for name in ("alpha", "gamma", "delta")}
        s.start()
        yield s
    finally:
        s.stop()
        if s.log.exists():
            shutil.copy(s.log, _screenshot_dir() / "dagster_dev.log")
        shutil.rmtree(base, ignore_errors=True)


def _screenshot_dir() -> Path:
    return Path(os.environ.get("AMR_UI_SCREENSHOTS", ROOT / "test-artifacts" / "ui-browser")).resolve()


@pytest.fixture(scope="module")
def shots(request):
    folder = _screenshot_dir()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    yield folder
    taken = sorted(p.name for p in folder.glob("*.png"))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\nUI screenshots ({len(taken)}) in {folder}: {', '.join(taken)}")


@pytest.fixture(scope="module")
def page(site):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        context.set_default_timeout(30_000)
        pg = context.new_page()
        dismiss_community_dialog(pg, site)
        yield pg
        browser.close()


def dismiss_community_dialog(page, site: Site) -> None:
    """The UI opens a one-time "Join the Dagster community" dialog a second after the first page
    of a fresh instance loads (on localhost only); "Skip" records it as seen for good."""
    page.goto(site.url + "/overview")
    dialog = page.get_by_text("Join the Dagster community")
    dialog.wait_for(timeout=30_000)
    page.get_by_role("button", name="Skip").click()
    dialog.wait_for(state="hidden")


def open_page(page, site: Site, path: str) -> None:
    page.goto(site.url + path)
    page.wait_for_load_state("networkidle")
    assert not page.get_by_text("Join the Dagster community").count()


def wait_for_text(page, site: Site, path: str, text: str | re.Pattern, timeout_s: float, reload_every_s: float = 15) -> None:
    """Wait until ``text`` shows on ``path``; the UI updates live, reloading is the fallback."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            page.get_by_text(text).first.wait_for(state="visible", timeout=reload_every_s * 1000)
            return
        except PlaywrightTimeout:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{path}: {text!r} not shown after {timeout_s:.0f} s\n{site.log_tail()}")
        open_page(page, site, path)


# The run page's header tag (RunStatusTag): the run's status in words.
RUN_STATUS = re.compile(r"^(Success|Failure|Canceled|Canceling|Started|Starting|Queued|Not started|Managed)$")


def run_status(page) -> str | None:
    tag = page.locator(".BaseTag").filter(has_text=RUN_STATUS).first
    try:
        return tag.inner_text(timeout=10_000).strip()
    except PlaywrightTimeout:
        return None


def wait_for_run(page, site: Site, run_id: str, timeout_s: float) -> None:
    """Open the run's page and wait until its status tag reads "Success" (a failure fails at once)."""
    path = f"/runs/{run_id}"
    open_page(page, site, path)
    deadline = time.monotonic() + timeout_s
    while (status := run_status(page)) != "Success":
        assert status not in ("Failure", "Canceled", "Canceling"), f"run {run_id}: {status}\n{site.log_tail()}"
        assert time.monotonic() < deadline, f"run {run_id} still {status} after {timeout_s:.0f} s\n{site.log_tail()}"
        time.sleep(10)
        open_page(page, site, path)  # the page follows the run live; a reload guards against a stale socket
    # The event log holds the run's last lifecycle event too. The log is a virtualized list that
    # renders only the rows in view, and a reloaded page of a long run opens at its top: scroll
    # every scrollable box to its end until the event is drawn.
    last_event = page.get_by_text("RUN_SUCCESS", exact=True).first
    deadline = time.monotonic() + 60
    while not last_event.is_visible():
        assert time.monotonic() < deadline, f"run {run_id}: Success, but RUN_SUCCESS not shown in its event log"
        page.evaluate(SCROLL_TO_END)
        time.sleep(1)


# Scroll each box that overflows to its bottom (the run page's event log among them).
SCROLL_TO_END = """() => {
  for (const e of document.querySelectorAll("*")) {
    if (e.scrollHeight > e.clientHeight + 1) e.scrollTop = e.scrollHeight;
  }
}"""


# The runs list is built of divs: from each run's link, climb to the largest ancestor that holds
# no other run's link (its row) and keep the link if that row shows the text.
RUN_LINKS_SHOWING = """(text) => {
  const isRun = (h) => /^\\/runs\\/[0-9a-f-]{36}$/.test(h || "");
  const found = [];
  for (const a of document.querySelectorAll("a[href^='/runs/']")) {
    const href = a.getAttribute("href");
    if (!isRun(href)) continue;
    let row = a;
    while (row.parentElement) {
      const runs = new Set(Array.from(row.parentElement.querySelectorAll("a[href^='/runs/']")).map((x) => x.getAttribute("href")).filter(isRun));
      if (runs.size > 1) break;
      row = row.parentElement;
    }
    if (row.innerText.includes(text) && !found.includes(href)) found.push(href);
  }
  return found;
}"""


def open_run_from_list(page, site: Site, text: str) -> str:
    """On the Runs page, open the run whose row shows ``text`` (a short run id, a partition);
    returns the full run id from the run page's address."""
    open_page(page, site, "/runs")
    wait_for_text(page, site, "/runs", text, timeout_s=120)
    runs = page.evaluate(RUN_LINKS_SHOWING, text)
    assert len(runs) == 1, f"runs list: {len(runs)} runs in rows showing {text!r}: {runs}"
    open_page(page, site, runs[0])
    return runs[0].rsplit("/", 1)[1]


def shot(page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=False)


def node_names(page) -> list[str]:
    return [t.strip() for t in page.locator("[class*=AssetNode_assetName]").all_inner_texts()]


def shown(name: str, labels: list[str]) -> bool:
    """Is asset ``name`` among the graph's labels (a long name is cut in the middle with ``…``)?"""
    for label in labels:
        if label == name:
            return True
        if "…" in label:
            head, tail = label.split("…", 1)
            if name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail):
                return True
    return False


def metadata_value(page, name: str) -> str:
    """The value cell of metadata entry ``name`` in the asset page's metadata table."""
    row = page.locator("tr").filter(has=page.locator("td").first.get_by_text(name, exact=True)).first
    row.wait_for()
    return row.locator("td").nth(1).inner_text().strip()


def launch_from_dialog(page, keys: list[str]) -> None:
    """In the open "Launch runs to materialize" dialog: pick ``keys``, press the launch button."""
    page.get_by_text("Launch runs to materialize").wait_for()
    page.get_by_text("Select a partition or create one").first.click()
    for key in keys:
        page.locator("[role=menuitem]", has_text=key).first.click()
    page.keyboard.press("Escape")  # closes the partition list, not the dialog
    page.get_by_text(f"{len(keys)} partition{'s' if len(keys) > 1 else ''}", exact=True).wait_for()
    label = "Launch 1 run" if len(keys) == 1 else "Launch backfill"
    page.get_by_role("button", name=label).click()


def test_asset_graph_shows_every_stage(site, page, shots):
    open_page(page, site, "/asset-groups")
    page.get_by_role("button", name=MATERIALIZE_ALL).wait_for()
    # The global graph starts with each group collapsed to one box: expand them all (⌥E, the
    # shortcut of the graph's "Expand all groups").
    page.locator("[class*=CollapsedGroupNode], [class*=AssetNode_assetName]").first.wait_for()
    if not page.locator("[class*=AssetNode_assetName]").count():
        page.keyboard.press("Alt+e")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(node_names(page)) < len(STAGES):
        time.sleep(0.5)
    labels = node_names(page)
    missing = [s for s in STAGES if not shown(s, labels)]
    assert not missing, f"stages not in the asset graph: {missing}; nodes shown: {labels}"
    # The sidebar's tree, each group unfolded, names every asset in full (the graph cuts long ones).
    sidebar = page.locator("[class*=AssetSidebarNode_itemContainer]")
    folded = sidebar.locator("button:has([aria-label=arrow_drop_down])")
    for i in range(folded.count()):
        folded.nth(i).click()
    listed: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not set(STAGES) <= set(listed):
        time.sleep(0.5)
        listed = sidebar.locator("[title]").evaluate_all("els => els.map(e => e.title)")
    assert set(STAGES) <= set(listed), f"stages not in the sidebar: {sorted(set(STAGES) - set(listed))}"
    shot(page, shots, "1-asset-graph")


def test_materialize_seed_stages_from_the_ui(site, page, shots):
    key = site.keys["alpha"]
    open_page(page, site, "/locations/amr_dagster/asset-groups/seeds")
    page.get_by_role("button", name=MATERIALIZE_ALL).click()
    launch_from_dialog(page, [key])
    toast = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}")).first
    toast.wait_for()
    short = re.search(r"Launched run ([0-9a-f]{8})", toast.inner_text()).group(1)
    run_id = open_run_from_list(page, site, short)
    wait_for_run(page, site, run_id, timeout_s=600)
    assert page.get_by_text(f"partition: {key}").first.is_visible()
    # Its steps: the three seed stages, all succeeded (the Gantt chart cuts their names to fit).
    page.get_by_text(f"Succeeded ({len(SEED_STAGES)})", exact=True).wait_for()
    page.get_by_text("Errored (0)", exact=True).wait_for()
    shot(page, shots, "2-seed-run-succeeded")

    # The asset page, on this partition, shows the counts of the frame the run stored.
    frame = pl.read_parquet(site.data / "filtered_seeds" / f"{key}.parquet")
    accepted = frame.filter(pl.col("status") == "accepted").height
    assert frame.height == 2 and frame.filter(pl.col("judge_verdict").is_not_null()).height == 2  # both seeds judged
    open_page(page, site, f"/assets/filtered_seeds?view=partitions&partition={key}")
    page.get_by_role("heading", name=key).or_(page.get_by_text(key, exact=True)).first.wait_for()
    page.get_by_text("Materialized", exact=True).first.wait_for()
    expected = {"dagster/row_count": frame.height, "input_rows": 2, "accepted": accepted, "rejected": frame.height - accepted}
    shown_counts = {name: metadata_value(page, name) for name in expected}
    assert shown_counts == {k: str(v) for k, v in expected.items()}, (shown_counts, expected)
    page.locator("tr").filter(has=page.get_by_text("input_rows", exact=True)).first.evaluate("e => e.scrollIntoView({block: 'center'})")
    shot(page, shots, "3-filtered-seeds-row-counts")


@pytest.mark.timeout(2400)  # the whole job on the embedded model: ~5 min on quiet cores, far more on busy ones
def test_sensor_turns_a_dropped_file_into_a_partition_and_a_successful_run(site, page, shots):
    path = "/locations/amr_dagster/sensors/seed_file_sensor"
    open_page(page, site, path)
    switch = page.locator("tr").filter(has=page.get_by_text("Running", exact=True)).locator("input[type=checkbox]").first
    switch.wait_for(state="attached", timeout=60_000)
    assert switch.is_checked(), "the seed sensor should be on by default"
    page.get_by_text("amr_pipeline", exact=True).first.wait_for()  # its target: the whole job
    shot(page, shots, "4-sensor-running")

    dropped = _write_seed(site.seeds, "dropped")
    from amr_dagster.seeds.batches import batch_key

    key = batch_key(dropped)
    # The sensor's next tick (every 30 s) adds the partition and requests its run.
    wait_for_text(page, site, path, re.compile(r"\b1 runs? requested"), timeout_s=180)
    shot(page, shots, "5-sensor-tick-requested-a-run")
    partitions = f"/assets/seed_functions?view=partitions&partition={key}"
    open_page(page, site, partitions)
    wait_for_text(page, site, partitions, key, timeout_s=60)
    # Listed on the left and opened on the right (an unknown key would read "No partition selected").
    deadline = time.monotonic() + 30
    while page.get_by_text(key, exact=True).count() < 2:
        assert time.monotonic() < deadline, f"partition {key} listed but not opened on {partitions}"
        time.sleep(0.5)
    shot(page, shots, "6-sensor-partition-listed")

    run_id = open_run_from_list(page, site, f"partition: {key}")
    wait_for_run(page, site, run_id, timeout_s=1800)
    assert page.get_by_text(f"partition: {key}").first.is_visible()
    page.get_by_text("seed_file_sensor").first.wait_for()  # launched by the sensor
    page.get_by_text("amr_pipeline").first.wait_for()
    shot(page, shots, "7-sensor-run-succeeded")

    # The whole job ran: the dataset card and its figures, shown in the UI as Markdown images.
    card = site.data / "instruction_dataset" / "DATASET_CARD.md"
    assert "![Funnel" in card.read_text() and (card.parent / "funnel.svg").is_file()
    open_page(page, site, "/assets/instruction_dataset")
    row = page.locator("tr").filter(has=page.get_by_text("figures", exact=True)).first
    row.wait_for()
    images = row.locator("img[src^='data:image/svg+xml']")
    if not images.count():  # long Markdown entries open in a dialog
        row.get_by_text(re.compile("Show")).first.click()
        images = page.locator("[role=dialog] img[src^='data:image/svg+xml']")
    images.first.wait_for()
    widths = images.evaluate_all("els => els.map(e => e.naturalWidth)")
    assert len(widths) == 2 and all(w > 0 for w in widths), widths
    shot(page, shots, "8-dataset-card-figures")


def test_backfill_over_two_partitions_from_the_ui(site, page, shots):
    keys = [site.keys["gamma"], site.keys["delta"]]
    open_page(page, site, "/locations/amr_dagster/asset-groups/seeds")
    page.get_by_role("button", name=MATERIALIZE_ALL).click()
    launch_from_dialog(page, keys)
    toast = page.get_by_text(re.compile(r"Created backfill [a-z0-9]+")).first
    toast.wait_for()
    path = "/runs/b/" + re.search(r"Created backfill ([a-z0-9]+)", toast.inner_text()).group(1)
    open_page(page, site, path)
    deadline = time.monotonic() + 900
    while (status := backfill_status(page)) != "Succeeded":
        assert status in ("Requested", "In progress", None), f"backfill {path}: {status}\n{site.log_tail()}"
        assert time.monotonic() < deadline, f"backfill {path} still {status} after 900 s\n{site.log_tail()}"
        time.sleep(10)
        open_page(page, site, path)
    for key in keys:  # the partition selection names both partitions
        page.get_by_text(key, exact=True).first.wait_for()
        assert (site.data / "deduped_seeds" / f"{key}.parquet").is_file(), key
    body = page.inner_text("body")
    for stage in SEED_STAGES:  # per asset: targeted, in progress, succeeded, failed
        counts = re.search(rf"{stage}\n(?:{stage}\n)?100% completed\n(\d+)\n(\d+)\n(\d+)\n(\d+)", body)
        assert counts and counts.groups() == ("2", "0", "2", "0"), f"{stage}: {counts and counts.groups()}\n{body}"
    shot(page, shots, "9-backfill-completed")


def backfill_status(page) -> str | None:
    """The backfill page's Status tag ("Requested", "In progress", "Succeeded", "Failed", ...)."""
    label = page.get_by_text("Status", exact=True).first
    try:
        label.wait_for(timeout=20_000)
        return label.locator("xpath=following-sibling::div[1]").inner_text(timeout=10_000).strip() or None
    except PlaywrightTimeout:
        return None
