"""``benchmarks.png`` from ``results.json``: one panel per comparison (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

OURS = "#2b7bba"
OTHER = ["#e08214", "#b35806", "#8c8c8c"]


def _missing(ax: Any, title: str, why: str = "not run") -> None:
    ax.set_title(title, fontsize=10)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _latency(ax: Any, sec: dict[str, Any] | None) -> None:
    title = "1. Decision latency p50 (µs), 1 process"
    if not sec or "pools" not in sec:
        return _missing(ax, title, (sec or {}).get("error", "not run"))
    sizes = list(sec["pools"])
    x = range(len(sizes))
    series = [
        ("PING, raw connection", "ping_direct_p50_us", "#cccccc"),
        ("client.ping()", "ping_p50_us", OTHER[2]),
        ("acquire", "acquire_p50_us", "#7fb2dd"),
        ("acquire+complete", "acquire_complete_p50_us", OURS),
    ]
    w = 0.2
    for j, (label, key, color) in enumerate(series):
        vals = [sec["pools"][s].get(key, 0) for s in sizes]
        ax.bar([i + (j - 1.5) * w for i in x], vals, w, label=label, color=color)
    ax.set_xticks(list(x), [f"{s} keys" for s in sizes])
    ax.set_ylabel("µs")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)


def _admission(ax: Any, sec: dict[str, Any] | None) -> None:
    title = "2. Sent to the provider vs capacity (one burst)"
    if not sec or "scenarios" not in sec:
        return _missing(ax, title, (sec or {}).get("error", "not run"))
    procs = [str(p) for p in sec["process_counts"]]
    names = list(sec["scenarios"])
    labels = {
        "rotating_llm": "rotating-llm",
        "usage-based-routing-v2": "LiteLLM ubr-v2",
        "usage-based-routing-v2+enforce_model_rate_limits": "ubr-v2 + enforce",
    }
    w = 0.8 / len(names)
    colors = [OURS, *OTHER]
    for j, name in enumerate(names):
        vals = [sec["scenarios"][name].get(p, {}).get("admitted", 0) for p in procs]
        pos = [i + (j - (len(names) - 1) / 2) * w for i in range(len(procs))]
        ax.bar(pos, vals, w, label=labels.get(name, name), color=colors[j % len(colors)])
    ax.axhline(sec["capacity"], color="k", ls="--", lw=1, label=f"capacity ({sec['capacity']})")
    ax.set_xticks(range(len(procs)), [f"{p} proc" for p in procs])
    ax.set_ylabel("requests sent to the provider")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)


def _goodput(ax: Any, sec: dict[str, Any] | None) -> None:
    title = "3. Goodput at 3x demand (served/min)"
    if not sec or "systems" not in sec:
        return _missing(ax, title, (sec or {}).get("error", "not run"))
    names = list(sec["systems"])
    labels = {
        "rotating_llm": "rotating-llm",
        "litellm_usage_based_routing_v2": "LiteLLM ubr-v2",
        "round_robin": "round robin",
    }
    colors = [OURS, OTHER[0], OTHER[2]]
    vals = [sec["systems"][n]["served_per_minute"] for n in names]
    bars = ax.bar(range(len(names)), vals, color=colors[: len(names)])
    for bar, n in zip(bars, names, strict=True):
        s = sec["systems"][n]
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            bar.get_height() * 0.5,
            f"{s['goodput_vs_capacity']:.0%}\n{s['provider_429s']} 429s",
            ha="center",
            va="center",
            fontsize=8,
            color="white",
        )
    ax.axhline(sec["capacity_per_minute"], color="k", ls="--", lw=1, label="capacity")
    ax.set_xticks(range(len(names)), [labels.get(n, n) for n in names], fontsize=8)
    ax.set_ylabel("requests served per minute")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")


def _overhead(ax: Any, sec: dict[str, Any] | None) -> None:
    title = "4. Per-call p50 vs ChatGoogleGenerativeAI (ms)"
    if not sec or "direct_p50_ms" not in sec:
        return _missing(ax, title, (sec or {}).get("error", "not run"))
    vals = [sec["direct_p50_ms"], sec["wrapped_p50_ms"]]
    ax.bar([0, 1], vals, color=[OTHER[2], OURS])
    ax.set_xticks([0, 1], ["ChatGoogleGenerativeAI", "RotatingChatModel"], fontsize=8)
    ax.text(1, vals[1], f"+{sec['overhead_p50_ms']:.2f} ms", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("ms per call (simulator)")
    ax.set_title(title, fontsize=10)


def _throughput(ax: Any, sec: dict[str, Any] | None) -> None:
    title = "5. Decisions per second (acquire+complete)"
    if not sec or "redis" not in sec:
        return _missing(ax, title, (sec or {}).get("error", "not run"))
    for label, key, color in (
        ("one Redis", "redis", OURS),
        ("Redis Cluster", "cluster", "#d6604d"),
    ):
        runs = {k: v for k, v in (sec.get(key) or {}).items() if isinstance(v, dict)}
        if not runs:
            continue
        procs = sorted(runs, key=int)
        ax.plot(
            [int(p) for p in procs],
            [runs[p]["decisions_per_s"] for p in procs],
            marker="o",
            label=label,
            color=color,
        )
    procs_all = sorted(
        {int(p) for key in ("redis", "cluster") for p in (sec.get(key) or {}) if p.isdigit()}
    )
    ax.set_xticks(procs_all)
    ax.set_xlabel("processes")
    ax.set_ylabel("decisions / s")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)


def _targets(ax: Any, results: dict[str, Any]) -> None:
    ax.axis("off")
    ax.set_title("Targets (issue 8)", fontsize=10)
    lines = []
    for row in results.get("targets", []):
        mark = "met " if row["met"] else "MISS"
        value = row["value"]
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        lines.append(f"[{mark}] {row['target']}\n        value: {value}")
    m = results.get("machine", {})
    lines.append(
        f"\n{m.get('cpu_count')} CPUs, load {m.get('load_average_start')} -> "
        f"{m.get('load_average_end')}"
    )
    ax.text(
        0,
        1,
        "\n".join(lines),
        va="top",
        ha="left",
        fontsize=7,
        family="monospace",
        transform=ax.transAxes,
        wrap=True,
    )


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    secs = results.get("sections", {})
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    _latency(axes[0][0], secs.get("latency"))
    _admission(axes[0][1], secs.get("admission"))
    _goodput(axes[0][2], secs.get("goodput"))
    _overhead(axes[1][0], secs.get("overhead"))
    _throughput(axes[1][1], secs.get("throughput"))
    _targets(axes[1][2], results)
    fig.suptitle(
        f"rotating-llm benchmarks ({results.get('started_utc', '')}"
        f"{', quick' if results.get('quick') else ''})",
        fontsize=12,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
