# Renders one run of bench/run.sh as Markdown. Input: results.tsv; variables: machine, memory and
# startup (the paths of machine.txt, memory.tsv and startup.tsv). Re-render a past run with
#   d=bench/results/latest; awk -F'\t' -v machine=$d/machine.txt -v memory=$d/memory.tsv \
#       -v startup=$d/startup.tsv -f bench/report.awk $d/results.tsv

function ms(us) { return (us >= 100000) ? sprintf("%.0f ms", us / 1000) : sprintf("%.2f ms", us / 1000) }
function mib(kb) { return sprintf("%.1f MiB", kb / 1024) }
function ratio(a, b) { return (b > 0) ? sprintf("%.0f%%", 100 * a / b) : "n/a" }
function rps_of(server, name) { return ((server SUBSEP name) in rps) ? rps[server, name] : 0 }
# Sets the globals med, lo and hi from the startup samples of `key`; returns the sample count.
function stats(key,    m, a, b, x) {
    m = n[key]
    for (a = 1; a <= m; a++) sorted[a] = v[key, a] + 0
    for (a = 2; a <= m; a++) { x = sorted[a]; b = a - 1; while (b > 0 && sorted[b] > x) { sorted[b + 1] = sorted[b]; b-- } sorted[b + 1] = x }
    if (m == 0) return 0
    med = (m % 2) ? sorted[(m + 1) / 2] : int((sorted[m / 2] + sorted[m / 2 + 1]) / 2)
    lo = sorted[1]; hi = sorted[m]
    return m
}

BEGIN {
    FS = "\t"
    while ((getline line < machine) > 0) { i = index(line, "="); meta[substr(line, 1, i - 1)] = substr(line, i + 1) }
    while ((getline line < memory) > 0) { split(line, f, "\t"); idle[f[1]] = f[2] }
    while ((getline line < startup) > 0) { split(line, f, "\t"); key = f[1] SUBSEP f[2]; n[key]++; v[key, n[key]] = f[4] }
    # The PocketBase scenario each Backroom scenario is compared with.
    peer["GET /health/live"] = "GET /api/health"
    peer["profile read, bearer"] = "own record read, token"
    peer["profile read, cookie"] = "own record read, token"
    peer["sign-in"] = "sign-in"
}
{ row[++rows] = $0; rps[$2, $3] = $4 }
END {
    printf "%s cores (%s), %s; %s; wrk %s; Backroom %s; PocketBase %s.\n\n", meta["cores"], meta["cpu"], \
        meta["memory"], meta["date_utc"], meta["wrk_args"], meta["backroom_commit"], \
        ("pocketbase" in meta) ? meta["pocketbase"] : "not run"
    print "| server | scenario | conns | requests/s | p50 | p99 | peak RSS | server CPU per request | errors | other load | ÷ ceiling | ÷ PocketBase |"
    print "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    ceiling = rps_of("ceiling", "GET / (text)")
    for (i = 1; i <= rows; i++) {
        split(row[i], f, "\t")
        vs_ceiling = (f[3] == "sign-in") ? "—" : (f[2] == "ceiling") ? "100%" : ratio(f[4], ceiling)
        vs_peer = "—"
        if (f[2] == "backroom" && (f[3] in peer)) vs_peer = ratio(f[4], rps_of("pocketbase", peer[f[3]]))
        printf "| %s | %s | %d | %.0f | %s | %s | %s | %.0f µs | %d | %d%% | %s | %s |\n", f[2], f[3], f[12], f[4], \
            ms(f[5]), ms(f[6]), mib(f[7]), f[10], f[9], f[11], vs_ceiling, vs_peer
    }
    print ""
    print "| server | idle RSS | idle RSS after its runs | ready, existing database: median (min–max) | ready, fresh database: median (min–max) |"
    print "| --- | ---: | ---: | ---: | ---: |"
    split("ceiling backroom pocketbase", servers, " ")
    for (s = 1; s <= 3; s++) {
        server = servers[s]
        if (!(server in idle)) continue
        cells = ""
        split("existing fresh", states, " ")
        for (t = 1; t <= 2; t++) {
            if (stats(server SUBSEP states[t]) == 0) { cells = cells " | —"; continue }
            cells = cells sprintf(" | %d ms (%d–%d, %d start%s)", med, lo, hi, n[server SUBSEP states[t]], (n[server SUBSEP states[t]] == 1) ? "" : "s")
        }
        after = ((server "-after") in idle) ? mib(idle[server "-after"]) : "—"
        printf "| %s | %s | %s%s |\n", server, mib(idle[server]), after, cells
    }
    print ""
    bearer = rps_of("backroom", "profile read, bearer")
    stats("backroom" SUBSEP "existing")
    print "| target | measured | met |"
    print "| --- | ---: | --- |"
    printf "| profile read (bearer) at least 50%% of the ceiling's requests/s | %s | %s |\n", ratio(bearer, ceiling), \
        (ceiling > 0 && bearer >= ceiling / 2) ? "yes" : "**no**"
    printf "| idle RSS under 30 MiB | %s | %s |\n", mib(idle["backroom"]), (idle["backroom"] < 30 * 1024) ? "yes" : "**no**"
    printf "| ready in under 300 ms on an existing SQLite database | %d ms | %s |\n", med, (med < 300) ? "yes" : "**no**"
}
