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


def table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| case | ytmp3 median [min-max] | baseline median [min-max] | ratio | goal | met? |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.get("error"):
            lines.append(
                f"| {r['case']}. {r['title']} | error: {r['error']} | | | {r['goal']} | - |"
            )
            continue
        base = spread(r["baseline"], r["unit"])
        if r["baseline"]:
            base = f"{base}<br>{r['baseline_label']}"
        ratio = f"{r['ratio']:.2f}x<br>{r['ratio_label']}" if r.get("ratio") else "-"
        lines.append(
            f"| {r['case']}. {r['title']} | {spread(r['ytmp3'], r['unit'])}<br>"
            f"{r['ytmp3_label']} | {base} | {ratio} | {r['goal']} | {met_cell(r['met'])} |"
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
            "### 1. Single video",
            "",
            f"- submit → Running: {spread(d['submit_to_running'], 's')}, all of it Prefect's: "
            f"the runner's poll picks the run up (submit → Pending "
            f"{spread(d['submit_to_pending'], 's')}; it polls every 1 s), then starts a new "
            f"Python process for the run, which imports Prefect and the flow and sets the "
            f"run up (Pending → Running {spread(d['pending_to_running'], 's')}).",
            f"- the flow run itself (Running → Completed, times from the API): "
            f"{spread(d['flow_run_s'], 's')}; the CLI's whole run: {spread(r['baseline'], 's')}",
            f"- MP3 seen on disk (polled every 50 ms): {spread(d['mp3_seen_s'], 's')} after submit",
            f"- overhead beyond the CLI (median - median): {d['overhead_s']:.2f} s (goal ≤ 3 s)",
            "",
        ]
    if (r := by_case.get("2")) is not None:
        d = r["details"]
        steps = ", ".join(
            f"{name} {value:.2f} s" for name, value in d["task_run_seconds_median"].items()
        )
        out += [
            "### 2. Short-item playlist (also issue 3's numbers)",
            "",
            f"- ytmp3 submit → Completed {spread(r['ytmp3'], 's')}, of which the flow run "
            f"{spread(d['flow_run_s'], 's')}; yt-dlp CLI {spread(r['baseline'], 's')}.",
            f"- The same work without Prefect (the flow's own functions, "
            f"2 at a time, in one process): {spread(d['work_only_s'], 's')}; "
            f"that alone is {d['speedup_work_only_vs_cli']:.2f}x the CLI's speed.",
            f"- **Per-item orchestration overhead** = (flow run time - work-only time) / "
            f"{d['items']} items = **{d['per_item_overhead_s']:.2f} s per item** (medians). "
            f"Counting the fixed start-up too (submit → Completed instead of the flow run): "
            f"{d['per_item_overhead_end_to_end_s']:.2f} s per item; the fixed part "
            f"(submit → flow start) is {d['fixed_overhead_s']:.2f} s.",
            f"- Task runs per flow run: {d['task_runs_per_run']}; median duration per task "
            f"run: {steps}.",
            "",
        ]
    if (r := by_case.get("3")) is not None:
        d = r["details"]
        speeds = d["lame_speed_x"]
        pair = d.get("parallel_pair_s") or []
        out += [
            "### 3. Long-item playlist",
            "",
            f"- {d['items']} items, {d['audio_seconds']:.0f} s of audio. Single-core "
            f"libmp3lame speed (ffmpeg alone, 5-min source → 192k): "
            f"{statistics.median(speeds):.0f}x real time [{min(speeds):.0f}-{max(speeds):.0f}], "
            f"so the two-core limit is {spread(r['baseline'], 's')}.",
            f"- ytmp3 submit → Completed {spread(r['ytmp3'], 's')}; flow run alone "
            f"{spread(d['flow_run_s'], 's')} = {d['flow_run_ratio']:.2f}x the limit.",
        ]
        if pair:
            out.append(
                f"- Reality check of the limit on this (shared) machine: ffmpeg alone encoding "
                f"the {d['items']} sources two at a time took {spread(pair, 's')}."
            )
        out.append("")
    if (r := by_case.get("4")) is not None:
        d = r["details"]
        out += [
            "### 4. Dedupe hit",
            "",
            f"- flow run (API start → end): {spread(r['ytmp3'], 's')}; submit → Completed "
            f"{spread(d['submit_to_completed'], 's')}.",
            f"- media bytes served per repeat: {d['media_bytes_served']}; requests to the media "
            f"server: {d['requests_to_media_server']}.",
            "",
        ]
    if (r := by_case.get("7")) is not None:
        d = r["details"]
        roles = ", ".join(
            f"{role} {s['median']:.0f} MB" for role, s in d["peak_by_role_mb"].items()
        )
        single = ", ".join(
            f"{role} {s['median']:.0f} MB" for role, s in d["peak_single_process_mb"].items()
        )
        out += [
            "### 7. Memory during case 3",
            "",
            f"- Peak of the summed RSS of the serving process and all its children, sampled "
            f"every {d['interval_s']} s ({d['samples']} samples): {spread(r['ytmp3'], 'MB')}.",
            f"- Peak per role (summed over processes of that role): {roles}.",
            f"- Largest single process per role: {single}.",
            "- RSS counts shared pages (libraries) once per process, so the sum is an upper "
            "bound. The Prefect server (~250 MB) is not a worker process and is not counted.",
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
        roles = d["peak_by_role_mb"]
        bars = [("total", r["ytmp3"], blue)]
        bars += [(_wrap(role), [s["median"]], light) for role, s in roles.items()]
        return bars
    bars = [("ytmp3", r["ytmp3"], blue)]
    if r["case"] == "4":
        bars.append(("submit->done", d["submit_to_completed"], light))
    if r["baseline"]:
        bars.append((_wrap(r["baseline_label"]), r["baseline"], grey))
    if r["case"] == "2":
        bars.append(("same work,\nno Prefect", d["work_only_s"], green))
    if r["case"] == "3" and d.get("parallel_pair_s"):
        bars.append(("ffmpeg alone,\n2 at a time", d["parallel_pair_s"], green))
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
        if r["case"] == "1":  # the part of ytmp3's bar before the flow run starts
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
    base = statistics.median(r["baseline"]) if r["baseline"] else None
    case = r["case"]
    if case == "1" and base is not None:
        return base + 3.0
    if case == "2" and base is not None:
        return base / 1.7
    if case == "3" and base is not None:
        return base * 1.3
    if case == "4":
        return 1.0
    if case == "5":
        return 3.0
    if case == "6":
        return 1.5
    return None


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
        "(`PREFECT_RUNNER_POLL_FREQUENCY=1`), media from the test suite's `MediaServer` on "
        "127.0.0.1 (ffmpeg-generated: a 160x120 h264/aac mp4 for case 1, aac m4a for the "
        'feeds). Every ytmp3 time is `run_deployment("convert/on-demand", timeout=0)` '
        "then polling; state times come from the Prefect API. The CLI baseline is "
        "`yt-dlp -x --audio-format mp3 --audio-quality 192K URL` into a fresh directory. "
        f"Every ytmp3 repetition uses new URLs (no dedupe hit), after one discarded "
        f"warm-up conversion each way. Start-up: server healthy after "
        f"{run['startup'].get('server_healthy_s', 0):.1f} s, deployments served after "
        f"another {run['startup'].get('deployments_served_s', 0):.1f} s.",
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
