"""docs/benchmarks.md and docs/benchmarks.png from one ``python -m bench`` run."""

from __future__ import annotations

import statistics
import textwrap
from pathlib import Path
from typing import Any

ANALYSIS = Path(__file__).resolve().parent / "analysis.md"
"""Hand-written findings (profiles, costs, proposed changes), included in the docs."""


def fmt(value: float | None, unit: str = "s") -> str:
    if value is None:
        return "-"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit == "s":
        return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"
    return f"{value:g} {unit}"


def spread(values: list[float], unit: str) -> str:
    if not values:
        return "-"
    median = statistics.median(values)
    if len(values) == 1:
        return f"{fmt(median, unit)} (n=1)"
    low, high = min(values), max(values)
    number = (lambda v: f"{v:.0f}") if unit == "MB" else (lambda v: f"{v:.2f}")
    return f"{fmt(median, unit)} [{number(low)}-{number(high)}]"


def met_cell(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "-"}[met]


COLUMNS = ("MeTube", "yt-dlp CLI")
"""Baselines with a column of their own; any other (a limit, a floor) shares one."""


def table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| case | ytmp3 median [min-max] | MeTube | yt-dlp CLI | other baseline | ratio | goal "
        "| met? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.get("error"):
            lines.append(
                f"| {r['case']}. {r['title']} | error: {r['error']} | | | | | {r['goal']} | - |"
            )
            continue
        base = r.get("baselines", {})
        cells = [spread(base[name], r["unit"]) if name in base else "-" for name in COLUMNS]
        if r["case"] in ("1", "2", "3") and "MeTube" not in base:
            cells[0] = "MeTube not measured"
        other = [
            f"{spread(v, r['unit'])}<br>{name}" for name, v in base.items() if name not in COLUMNS
        ]
        ratios = "<br>".join(
            f"{name} {value:+.2f} s" if " - " in name else f"{name} {value:.2f}x"
            for name, value in r.get("ratios", {}).items()
        )
        lines.append(
            f"| {r['case']}. {r['title']} | {spread(r['ytmp3'], r['unit'])}<br>"
            f"{r['ytmp3_label']} | {' | '.join(cells)} | {'<br>'.join(other) or '-'} | "
            f"{ratios or '-'} | {r['goal']} | {met_cell(r['met'])} |"
        )
    return lines


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def details(results: list[dict[str, Any]]) -> list[str]:
    by_case = {r["case"]: r for r in results if not r.get("error")}
    out: list[str] = []
    if (r := by_case.get("1")) is not None:
        d = r["details"]
        out += [
            "### 1. One 3-min video",
            "",
            f"- submit → Running: {spread(d['submit_to_running'], 's')}: the runner's poll "
            f"(submit → Pending {spread(d['submit_to_pending'], 's')}; it polls every "
            f"{d.get('runner_poll_seconds', 1):g} s), "
            f"then the run's process forked from the warm one and the run set up "
            f"(Pending → Running {spread(d['pending_to_running'], 's')}).",
            f"- the flow run itself (Running → Completed): {spread(d['flow_run_s'], 's')}; "
            f"MP3 seen on disk (polled every 50 ms) {spread(d['mp3_seen_s'], 's')} after submit.",
            f"- task runs per flow run: {sorted(set(d['task_runs_per_run']))}; Prefect server "
            f"CPU per run (submit to 1 s after the end): {spread(d['server_cpu_s'], 's')}.",
            "",
        ]
    if (r := by_case.get("2")) is not None:
        d = r["details"]
        out += [
            "### 2. 20 x 30-s feed",
            "",
            f"- ytmp3 submit → Completed {spread(r['ytmp3'], 's')}, of which the flow run "
            f"{spread(d['flow_run_s'], 's')}.",
            f"- The same work without Prefect (the listing and `flows.pipeline.convert_item`, "
            f"{d['concurrency']} at a time, in one process): {spread(d['work_only_s'], 's')}.",
            f"- **Per-item orchestration overhead** = (flow run - work-only) / {d['items']} items "
            f"= **{d['per_item_overhead_s']:.3f} s per item** (medians).",
            f"- task runs per flow run: {sorted(set(d['task_runs_per_run']))}; Prefect server "
            f"CPU per run: {spread(d['server_cpu_s'], 's')}.",
            "",
        ]
    if (r := by_case.get("3")) is not None:
        d = r["details"]
        use = ", ".join(
            f"{name} {statistics.median(v):.0%} [{min(v):.0%}-{max(v):.0%}]"
            for name, v in d["encoder_utilisation"].items()
        )
        limit = r["baselines"].get("two-core libmp3lame limit", [])
        out += [
            "### 3. 8 x 5-min feed",
            "",
            f"- {d['items']} items, {d['audio_seconds']:.0f} s of audio; the two-core limit "
            f"(ffmpeg alone encoding one source to 192k on one core, measured every repetition, "
            f"times the items, halved) is {spread(limit, 's')}.",
            f"- ytmp3 flow run alone {spread(d['flow_run_s'], 's')}; Prefect server CPU per "
            f"run {spread(d['server_cpu_s'], 's')}.",
            f"- **Encoder CPU utilisation** over the run (ffmpeg CPU seconds / (run time x "
            f"2 cores), ffmpeg sampled every 0.1 s, so slightly low): {use}.",
            "",
        ]
    if (r := by_case.get("4")) is not None:
        d = r["details"]
        out += [
            "### 4. Dedupe hit",
            "",
            f"- flow run (API start → end): {spread(r['ytmp3'], 's')}; submit → Completed "
            f"{spread(d['submit_to_completed'], 's')}; media bytes served per repeat: "
            f"{d['media_bytes_served']}.",
            "",
        ]
    if (r := by_case.get("7")) is not None:
        peaks = r["details"]["peak_mb"]
        out += [
            "### 7. Memory during case 3",
            "",
            "Peaks of the summed RSS and PSS of a process tree, sampled every 0.1 s (0.2 s for "
            "the Prefect server). RSS counts shared pages once per process (an upper bound); "
            "PSS shares them out, so it is what the tree really costs. The forked flow-run "
            "process shares the forkserver's pages until it writes them.",
            "",
            "| tree | peak MB, median [min-max] |",
            "|---|---|",
            *(f"| {name} | {spread(values, 'MB')} |" for name, values in peaks.items()),
            "",
        ]
    if (r := by_case.get("5")) is not None:
        d = r["details"]
        out += ["### 5. Cleanup (bench/cleanup.py)", ""]
        for row in d.get("rows", []):
            out.append(
                f"- {row['entries']:,} entries: {row['total_s']:.2f} s, CPU {row['cpu_s']:.2f} s "
                f"(dry run {row['dry_run_s']:.2f} s; bare unlink floor {row['floor_s']:.2f} s; "
                f"{row['us_per_entry']:.0f} µs per entry)"
            )
        out += [f"- file system: {d.get('filesystem', '?')}", ""]
    if (r := by_case.get("6")) is not None:
        d = r["details"]
        out += [
            "### 6. Page render (bench/page_render.py)",
            "",
            f"- {d.get('library_entries')} library entries and {d.get('active_runs')} active "
            f"runs, one full rerun of the page under Streamlit's AppTest: "
            f"{spread(r['ytmp3'], 's')}, p95 {d.get('p95', 0):.2f} s; "
            f"first run {d.get('first_run_seconds', 0):.2f} s.",
            "",
        ]
    return out


def _bars(r: dict[str, Any]) -> list[tuple[str, list[float], str]]:
    """(label, values, colour) of the bars of one case's panel."""
    blue, grey, green, light = "#3b7dd8", "#9a9a9a", "#7fb77e", "#a9c8f0"
    d = r["details"]
    if r["case"] == "7":
        return [(_wrap(name), values, light) for name, values in d["peak_mb"].items()]
    bars = [("ytmp3", r["ytmp3"], blue)]
    if r["case"] == "4":
        bars.append(("submit->done", d["submit_to_completed"], light))
    colours = {"MeTube": green}
    bars += [(_wrap(name), v, colours.get(name, grey)) for name, v in r["baselines"].items()]
    if r["case"] == "2":
        bars.append(("same work,\nno Prefect", d["work_only_s"], light))
    return bars


def chart(results: list[dict[str, Any]], path: Path) -> None:
    """One panel per case: ytmp3 vs its baseline (median bars, min-max whiskers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if not r.get("error") and r["ytmp3"]]
    cols = 4
    rows = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 4.0 * rows), squeeze=False)
    for ax in axes.flat[len(shown) :]:
        ax.axis("off")
    for ax, r in zip(axes.flat, shown, strict=False):
        bars = _bars(r)
        for i, (_label, values, color) in enumerate(bars):
            median = statistics.median(values)
            err = [[median - min(values)], [max(values) - median]]
            ax.bar(i, median, color=color, yerr=err, capsize=4, width=0.6)
            text = f"{median:.0f}" if median >= 100 or r["unit"] == "MB" else f"{median:.2f}"
            ax.text(i, median, text, ha="center", va="bottom", fontsize=8)
        if r["case"] == "1" and r["details"].get("submit_to_running"):  # before the flow run
            running = statistics.median(r["details"]["submit_to_running"])
            ax.bar(0, running, color="#1f4e8c", width=0.6, label="submit -> Running")
            ax.legend(fontsize=7, loc="upper right")
        ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=7)
        goal_line = _goal_line(r)
        if goal_line is not None:
            ax.axhline(goal_line, color="#d62728", linestyle="--", linewidth=1)
            ax.annotate(
                "goal",
                (0, goal_line),
                xytext=(2, 2),
                textcoords="offset points",
                color="#d62728",
                fontsize=7,
                xycoords=("axes fraction", "data"),
            )
        status = {True: "goal met", False: "goal missed", None: ""}[r["met"]]
        title = textwrap.shorten(r["title"], 44, placeholder="...")
        ax.set_title(f"{r['case']}. {title}\n{status}", fontsize=9)
        ax.set_ylabel(r["unit"])
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("ytmp3 benchmarks (bars: median, whiskers: min-max; all in one run)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _goal_line(r: dict[str, Any]) -> float | None:
    """Where the goal sits on the ytmp3 bar's axis, for the cases that have one."""
    base = {name: statistics.median(v) for name, v in r["baselines"].items() if v}
    metube = base.get("MeTube")
    case = r["case"]
    if case == "1" and metube is not None:
        return metube + 1.0
    if case == "2" and metube is not None:
        return metube
    if case == "3":
        limit = 1.15 * base.get("two-core libmp3lame limit", float("inf"))
        return min(limit, metube or limit)
    return {"4": 1.0, "5": 5.0, "6": 1.5}.get(case)


def _wrap(text: str, width: int = 16) -> str:
    return "\n".join(textwrap.wrap(text, width))


def _code_line(code: dict[str, Any] | None) -> str:
    if not code:
        return "Code measured: not recorded."
    line = f"Code measured: `flows/` at commit {code['commit']} ({code['subject']})"
    changed = code.get("uncommitted_flows") or []
    if changed:
        names = ", ".join(f"`{entry[3:]}`" for entry in changed)
        return line + f", plus uncommitted changes to {names}."
    return line + ", no uncommitted changes."


def _metube_line(metube: dict[str, Any] | None) -> str:
    if not metube:
        return "MeTube not measured (set `BENCH_METUBE_DIR`, see bench/metube.py)."
    return (
        f"MeTube at commit {metube['commit']} (yt-dlp {metube['yt_dlp']} in its own venv) "
        "from `bench/metube.py`: its defaults, bound to 127.0.0.1, "
        "`MAX_CONCURRENT_DOWNLOADS=2`, `POST /add` with audio/mp3/192 into a folder per job, "
        "timed to every item finished in `/history` with its MP3 on disk."
    )


def markdown(run: dict[str, Any], chart_name: str) -> str:
    results = run["results"]
    machine = run["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python -m bench`); do not edit by hand. The findings "
        "at the end come from `bench/analysis.md` (`python -m bench --render` rewrites this "
        "page from the last run's `bench/results/bench.json` after editing them).",
        "",
        f"Run {run['started_at']} on {machine['cpus']} cores, Python {machine['python']}, "
        f"Prefect {machine['prefect']}, yt-dlp {machine['yt_dlp']}, {machine['ffmpeg']}. "
        f"The whole run took {run['total_seconds']:.0f} s. Load average (1 min) "
        f"{machine['load_before']:.1f} before, {machine['load_after']:.1f} after: this "
        "machine is shared, so every comparison below is measured in the same run, "
        "interleaved repetition by repetition.",
        "",
        _code_line(run.get("code")),
        "",
        "Mode: exactly `make run`'s — a Prefect server on SQLite (fresh `PREFECT_HOME`), "
        "prefect.yaml's deployments served by `python -m flows.deployments` "
        "(the runner polling every `YTMP3_RUNNER_POLL_SECONDS`, `YTMP3_CONCURRENCY` its "
        "default: the cores), "
        "the automations applied, media from the test suite's `MediaServer` on "
        "127.0.0.1 (ffmpeg-generated: a 160x120 h264/aac mp4 for case 1, aac m4a for the "
        'feeds). Every ytmp3 time is `run_deployment("convert/on-demand", timeout=0)` '
        "then polling; state times come from the Prefect API. The CLI baseline is "
        "`yt-dlp -x --audio-format mp3 --audio-quality 192K URL` into a fresh directory. "
        f"{_metube_line(run.get('metube'))} "
        f"Every repetition of every contender uses new URLs (no dedupe hit), after one "
        f"discarded warm-up conversion each way. Start-up: server healthy after "
        f"{run['startup'].get('server_healthy_s', 0):.1f} s, deployments served after "
        f"another {run['startup'].get('deployments_served_s', 0):.1f} s. The Prefect server "
        f"uses {run.get('server_idle_cpu', 0):.3f} CPU-s per second with nothing submitted "
        '(its own loops, the runner\'s polls): "server CPU per run" below includes that '
        "share of the run's duration plus 1 s.",
        "",
        "## Results",
        "",
        *table(results),
        "",
        f"![benchmarks chart]({chart_name})",
        "",
        "## Details",
        "",
        *details(results),
    ]
    if ANALYSIS.exists():
        lines += [ANALYSIS.read_text(encoding="utf-8").rstrip(), ""]
    return "\n".join(lines) + "\n"
