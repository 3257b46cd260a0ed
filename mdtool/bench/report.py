"""Results -> a Markdown table and a PNG plot (pure, apart from writing the files)."""

from __future__ import annotations

from pathlib import Path


def _f(x, fmt="{:.2f}", none="n/a"):
    return none if x is None else fmt.format(x)


def _storm_per_boot(st: dict) -> list[str]:
    """The storm's per-boot figures (a run before they were taken has none)."""
    res = st["results"]
    if not all("serving_cpu_ms_per_boot" in x for x in res.values()):
        return []
    return ["Per boot: serving CPU " + ", ".join(
                f"{k} {_f(x['serving_cpu_ms_per_boot'])} ms" for k, x in res.items())
            + "; the instance's own client (timed window, median round) " + ", ".join(
                f"{k} {_f(x['client_cpu_ms_per_boot'])} ms" for k, x in res.items())
            + "; request phase p50, Neutron's shape / mdtool: "
            + _f(st.get("requests_phase_neutron_over_mdtool"))
            + (" (pinned: the network node's processes on one CPU, the instances' clients "
               "on the others)" if st.get("pinned") else ""), ""]


def _met(ok) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def targets(r: dict) -> dict:
    """Each target of the issue: met (True/False) or not measured (None)."""
    t: dict = {}
    tp = r.get("throughput")
    if tp:
        for c in ("16", "64"):
            v = tp["ratios"].get(c)
            if v:
                t[f"throughput: fast path (c) >= 50% of haproxy (a) at {c} connections"] = (
                    v["c_over_a"] is not None and v["c_over_a"] >= 0.5)
                t[f"latency: fast path p99 <= 2x haproxy's at {c} connections"] = (
                    v["p99_c_over_a"] is not None and v["p99_c_over_a"] <= 2.0)
        t["throughput: chain (d) >= (b) at every connection count"] = all(
            v["d_over_b"] is not None and v["d_over_b"] >= 1.0 for v in tp["ratios"].values())
    mem = r.get("memory")
    if mem:
        big = str(max(int(k) for k in mem["by_networks"]))
        m = mem["by_networks"][big]
        if big == "100":
            t["memory: mdtool <= 1/10 of haproxy at 100 networks (private)"] = m["ratio_private"] <= 0.1
    b = r.get("boot")
    if b:
        t["boot: metadata adds < 50 ms (median)"] = b["metadata_added_ms"] < 50
    s = r.get("setup")
    if s and "200" in s["batch"]:
        t["set-up: 200 networks <= 60 s"] = s["batch"]["200"]["cumulative_seconds"] <= 60
        t["set-up: no-change re-run <= 5 s"] = s["rerun"]["seconds"] <= 5
    st = r.get("storm")
    if st:
        t["storm: every instance done >= 3x sooner than Neutron's shape"] = st["neutron_over_mdtool"] >= 3
        t["storm: no failed request"] = all(x["failures"] == 0 for x in st["results"].values())
    c = r.get("cli")
    if c:
        for name, ratio in c["over_help"].items():
            t[f"CLI: {name} <= 1.5x --help (median)"] = ratio <= 1.5
    nd = r.get("node")
    if nd:
        big = nd["networks"] >= 200
        n = nd["networks"]
        if big:
            t[f"node: idle CPU at {n} networks < 2 % of one core"] = \
                nd["idle"]["cpu_percent_of_one_core"] < 2
            t[f"node: p99 change latency, one port among {n} networks < 1 s"] = \
                nd["change"]["p99_ms"] < 1000
        t["node: port-create -> lease < 2 s (p99)"] = nd["lease"]["p99_ms"] < 2000
        two = nd.get("two_nodes") or {}
        if "p99_ms" in two:
            t["node: two nodes, port-create -> lease < 2 s (p99)"] = two["p99_ms"] < 2000
            t["node: two nodes, port-create -> both dnsmasq < 1 s (p99)"] = \
                two["reload_p99_ms"] < 1000
        t["node: dead process serving again within 2 s (worst)"] = \
            max(v["max_ms"] for v in nd["respawn"].values()) < 2000
    sc = r.get("scale")
    if sc:
        n = sc["networks"]
        if n >= 1000:
            t[f"scale: enable --all for {n} new networks <= 60 s"] = sc["enable"]["seconds"] <= 60
        t[f"scale: no-change re-run over {n} networks <= 5 s"] = sc["rerun"]["seconds"] <= 5
        t[f"scale: proxy PSS at {n} networks <= 64 MB"] = sc["proxy_memory_kb"]["pss"] <= 64 * 1024
        if n >= 1000:
            t[f"scale: idle CPU of every mdtool process and dnsmasq at {n} networks "
              "< 2 % of one core"] = sc["idle"]["percent_of_one_core"] < 2
        t["scale: nothing left after disable --all"] = not any(sc["left_after_disable"].values())
    return t


def markdown(r: dict) -> str:
    lines: list[str] = []
    tp = r.get("throughput")
    if tp:
        conns = list(next(iter(tp["results"].values()))["by_connections"])
        lines += [f"### 1. Throughput and latency: `GET {tp['path']}`, keep-alive, "
                  f"{tp['seconds']:g} s per cell (wrk, in the instance namespace)", "",
                  "| path | connections | req/s | p50 ms | p99 ms | non-2xx | errors |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for kind, res in tp["results"].items():
            for c in conns:
                x = res["by_connections"][c]
                lines.append(f"| {res['label']} | {c} | {x['rps']:.0f} | {x['p50_ms']:.2f} | "
                             f"{x['p99_ms']:.2f} | {x['non2xx']} | {x['socket_errors']} |")
        lines += ["", "| connections | (c)/(b) req/s | (c)/(a) req/s | (c)/(a) p99 | (d)/(b) req/s |",
                  "|---:|---:|---:|---:|---:|"]
        for c, v in tp["ratios"].items():
            lines.append(f"| {c} | {_f(v['c_over_b'])} | {_f(v['c_over_a'])} | "
                         f"{_f(v['p99_c_over_a'])} | {_f(v['d_over_b'])} |")
        lines.append("")
    mem = r.get("memory")
    if mem:
        lines += ["### 2. Memory of the proxying (kB, from /proc/PID/smaps_rollup)", "",
                  "| networks | mdtool RSS | mdtool PSS | mdtool private | haproxy RSS (sum) | "
                  "haproxy PSS (sum) | haproxy private (sum) | mdtool/haproxy private | "
                  "mdtool/haproxy PSS |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for n, v in mem["by_networks"].items():
            md, ha = v["mdtool"], v["haproxy"]
            lines.append(f"| {n} | {md['rss']} | {md['pss']} | {md['private']} | {ha['rss']} | "
                         f"{ha['pss']} | {ha['private']} | {_f(v['ratio_private'])} | "
                         f"{_f(v['ratio_pss'])} |")
        lines.append("")
    b = r.get("boot")
    if b:
        lines += [f"### 3. Boot to metadata (median of {b['boots']} udhcpc boots)", "",
                  "| DHCP alone ms | DHCP + meta_data.json ms | metadata adds ms (median) | "
                  "adds, worst ms |", "|---:|---:|---:|---:|",
                  f"| {b['dhcp_ms']:.1f} | {b['boot_to_metadata_ms']:.1f} | "
                  f"{b['metadata_added_ms']:.1f} | {b['metadata_added_max_ms']:.1f} |", ""]
    s = r.get("setup")
    if s:
        lp = s["loop"]
        lines += ["### 4. Set-up at scale: `enable-isolated-metadata`", "",
                  f"One CLI call per network ({lp['networks']} networks): "
                  f"{lp['seconds_each_median']:.2f} s each (median; the first, which also "
                  f"starts metadata and agent: {lp['seconds_first']:.2f} s), "
                  f"peak RSS {lp['peak_rss_kb'] / 1024:.0f} MB.", "",
                  "| networks | new in this call | wall s (this call) | cumulative s | "
                  "peak RSS MB |", "|---:|---:|---:|---:|---:|"]
        for n, v in s["batch"].items():
            lines.append(f"| {n} | {v['new_networks']} | {v['seconds']:.2f} | "
                         f"{v['cumulative_seconds']:.2f} | {v['peak_rss_kb'] / 1024:.0f} |")
        rr = s["rerun"]
        lines += ["", f"No-change re-run over {rr['networks']} networks: {rr['seconds']:.2f} s "
                  f"({'one call' if rr['one_call'] else 'one call per network'}), "
                  f"peak RSS {rr['peak_rss_kb'] / 1024:.0f} MB.", ""]
    g = r.get("registry")
    if g:
        lk = g["lookup"]
        lines += ["### 5. Registry", "", "| measure | value |", "|---|---:|",
                  f"| agent lookup p50 / p99, {lk['ports']} ports | {lk['p50_us']:.2f} / "
                  f"{lk['p99_us']:.2f} µs |",
                  f"| lookup miss p99 | {lk['miss_p99_us']:.2f} µs |",
                  f"| index build from the registry ({lk['ports']} ports) | "
                  f"{lk['index_build_s']:.2f} s |",
                  f"| `render_files` for {g['render']['ports']} ports | "
                  f"{g['render']['seconds'] * 1000:.0f} ms |"]
        ps = g.get("port_served")
        if ps:
            lines += [f"| `port-create` CLI (median of {ps['samples']}) | {ps['cli_ms']:.0f} ms |",
                      f"| port-create returned -> agent serves the port | "
                      f"{ps['after_commit_ms']:.0f} ms |",
                      f"| port-create started -> served | {ps['total_ms']:.0f} ms |"]
        lines.append("")
    st = r.get("storm")
    if st:
        from mdtool.bench.suite import STORM_LABELS, STORM_SERVING
        lines += [f"### 8. Boot storm: {st['networks']} networks x {st['per_network']} instances boot "
                  f"at once, each udhcpc then cloud-init 22.4's {st['requests_per_boot']} requests "
                  f"(median of {st['rounds']} alternating rounds)", "",
                  "| path | all done s | request p50 ms | request p99 ms | lease p50 s | "
                  "requests per boot p50 s | failures (all rounds) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for kind, x in st["results"].items():
            lines.append(f"| {STORM_LABELS[kind]} | {x['seconds_until_all_done']:.2f} | "
                         f"{_f(x['p50_ms'])} | {_f(x['p99_ms'])} | {_f(x['lease_s_p50'])} | "
                         f"{_f(x['requests_s_p50'])} | {x['failures']} |")
        lines += ["", f"Neutron's shape / mdtool, time until all done: {_f(st['neutron_over_mdtool'])}"
                  f" (rounds: " + "; ".join(
                      f"{k} " + ", ".join(f"{v:.2f}" for v in x["seconds_by_round"])
                      for k, x in st["results"].items()) + " s)", "",
                  "Neutron's shape / mdtool, CPU seconds of the processes serving the path "
                  f"(all rounds): {_f(st['serving_cpu_neutron_over_mdtool'])}", "",
                  *_storm_per_boot(st),
                  "Where the CPU went in the median round (CPU seconds; machine: every core, "
                  "anyone's work):", "",
                  "| path | serving the path | dnsmasq | instances' clients | machine |",
                  "|---|---:|---:|---:|---:|"]
        for kind, x in st["results"].items():
            cpu = x["cpu_s"]
            serving = " + ".join(f"{role} {cpu[role]:.2f}" for role in
                                 STORM_SERVING if role in cpu)
            lines.append(f"| {STORM_LABELS[kind]} | {serving} | {cpu.get('dnsmasq', 0):.2f} | "
                         f"{cpu['clients']:.2f} | {cpu['machine']:.2f} |")
        lines.append("")
    c = r.get("cli")
    if c:
        lines += [f"### 6. CLI start-up (median of {c['runs']} runs, SQLite registry)", "",
                  "| command | median ms | / `--help` |", "|---|---:|---:|"]
        for name, ms in c["median_ms"].items():
            lines.append(f"| `{name}` | {ms:.0f} | {_f(c['over_help'].get(name, 1.0))} |")
    nd = r.get("node")
    if nd:
        le, ch = nd["lease"], nd["change"]
        lines += [f"### 7. The node: `mdtool node run` over {nd['networks']} networks (SQLite)",
                  "", "| measure | value |", "|---|---:|",
                  f"| bring-up from nothing (first resync) | {nd['bring_up']['seconds']:.1f} s |",
                  f"| full resync, nothing to change | {nd['resync']['seconds']:.2f} s |",
                  f"| idle CPU ({nd['idle']['seconds']:g} s) | "
                  f"{nd['idle']['cpu_percent_of_one_core']:.2f} % of one core |",
                  f"| one port among {nd['networks']} networks -> dnsmasq, p50 / p99 "
                  f"({ch['samples']} samples) | {ch['p50_ms']:.0f} / {ch['p99_ms']:.0f} ms |",
                  f"| port-create -> dnsmasq has it, p50 / p99 | {le['reload_p50_ms']:.0f} / "
                  f"{le['reload_p99_ms']:.0f} ms |",
                  f"| port-create -> lease (udhcpc asking from the write), p50 / p99 "
                  f"({le['samples']} samples) | {le['p50_ms']:.0f} / {le['p99_ms']:.0f} ms |"]
        for what, v in nd["respawn"].items():
            lines.append(f"| respawn {what}: SIGKILL -> working again, median / worst "
                         f"({v['samples']}) | {v['median_ms']:.0f} / {v['max_ms']:.0f} ms |")
        two = nd.get("two_nodes") or {}
        if "skipped" in two:
            lines.append(f"| two nodes | skipped: {two['skipped']} |")
        elif two:
            lines += [f"| two nodes (PostgreSQL): port-create -> both dnsmasq, p50 / p99 | "
                      f"{two['reload_p50_ms']:.0f} / {two['reload_p99_ms']:.0f} ms |",
                      f"| two nodes: port-create -> lease, p50 / p99 ({two['samples']} samples) | "
                      f"{two['p50_ms']:.0f} / {two['p99_ms']:.0f} ms |"]
        lines.append("")
    sc = r.get("scale")
    if sc:
        n, idle = sc["networks"], sc["idle"]
        mem, nr = sc["proxy_memory_kb"], sc["node_resync"]
        lines += [f"### 9. Scale on one node: {n} networks (SQLite)", "",
                  "| measure | value |", "|---|---:|"]
        for key, label in (("enable", f"`enable-isolated-metadata --all`, {n} new networks"),
                           ("rerun", "the same again, nothing to change"),
                           ("disable", f"`disable-isolated-metadata --all`, {n} networks")):
            x = sc[key]
            lines.append(f"| {label} | {x['seconds']:.2f} s ({x['seconds'] / n * 1000:.0f} ms a "
                         f"network; peak RSS {x['peak_rss_kb'] / 1024:.0f} MB; "
                         f"{len(x['failed'])} failed) |")
        lines += [f"| proxy serving {n} networks: PSS / RSS / private | {mem['pss'] / 1024:.1f} / "
                  f"{mem['rss'] / 1024:.1f} / {mem['private'] / 1024:.1f} MB |",
                  f"| `node run`'s first resync (nothing to change) | {nr['seconds']:.2f} s, "
                  f"{nr['cpu_seconds']:.1f} CPU s |",
                  f"| idle CPU over {idle['seconds']:.0f} s, {idle['processes']} processes | "
                  f"{idle['percent_of_one_core']:.2f} % of one core ("
                  + ", ".join(f"{k} {v:.2f}" for k, v in idle["by_process"].items()) + ") |",
                  "| left after disable | " + ", ".join(
                      f"{k} {v}" for k, v in sc["left_after_disable"].items()) + " |",
                  "| kernel limits at the start | " + ", ".join(
                      f"{k} {v}" for k, v in sc["limits"].items()) + " |", ""]
    t = targets(r)
    if t:
        lines += ["### Targets", "", "| target | result |", "|---|---|"]
        lines += [f"| {k} | {_met(v)} |" for k, v in t.items()]
        lines.append("")
    return "\n".join(lines)


def plot(r: dict, path: Path) -> bool:
    """Draw the PNG; False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    tp = r.get("throughput")
    ax, ax2 = axes[0][0], axes[0][1]
    if tp:
        for kind, res in tp["results"].items():
            cs = [int(c) for c in res["by_connections"]]
            ax.plot(cs, [res["by_connections"][str(c)]["rps"] for c in cs], marker="o",
                    label=res["label"])
            ax2.plot(cs, [res["by_connections"][str(c)]["p99_ms"] for c in cs], marker="o",
                     label=res["label"])
        ax.set_yscale("log")  # (b) and (c) sit an order of magnitude below (a)
        for a, title, ylabel in ((ax, "Throughput (keep-alive)", "requests/s (log)"),
                                 (ax2, "p99 latency", "ms")):
            a.set_xscale("log", base=2)
            a.set_xlabel("connections")
            a.set_ylabel(ylabel)
            a.set_title(title)
            a.legend(fontsize=8)
            a.grid(alpha=0.3)
    mem = r.get("memory")
    ax = axes[1][0]
    if mem:
        ns = [int(n) for n in mem["by_networks"]]
        ax.plot(ns, [mem["by_networks"][str(n)]["mdtool"]["private"] / 1024 for n in ns],
                marker="o", label="mdtool proxy (one process), private")
        ax.plot(ns, [mem["by_networks"][str(n)]["haproxy"]["private"] / 1024 for n in ns],
                marker="o", label="haproxy per network (sum), private")
        ax.plot(ns, [mem["by_networks"][str(n)]["haproxy"]["pss"] / 1024 for n in ns],
                marker="x", ls="--", label="haproxy per network (sum), PSS")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("networks")
        ax.set_ylabel("MB")
        ax.set_title("Memory of the proxying")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    s = r.get("setup")
    ax = axes[1][1]
    if s:
        ns = [int(n) for n in s["batch"]]
        ax.plot(ns, [s["batch"][str(n)]["cumulative_seconds"] for n in ns], marker="o",
                label="enable-isolated-metadata (cumulative)")
        ax.axhline(60, color="grey", ls=":", label="target 60 s at 200")
        ax.set_xlabel("networks")
        ax.set_ylabel("s")
        ax.set_title("Set-up at scale")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("mdtool bench" + (" (quick)" if r.get("quick") else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
