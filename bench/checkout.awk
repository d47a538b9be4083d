# Renders one run of bench/checkout.sh as Markdown. Input: results.tsv; variables: machine,
# memory, orders, steps and oversell (the paths of machine.txt, memory.tsv, orders.tsv,
# steps.tsv and oversell.tsv). Re-render a past run:
#   d=bench/results/<run>-checkout; awk -F'\t' -v machine=$d/machine.txt -v memory=$d/memory.tsv \
#       -v orders=$d/orders.tsv -v steps=$d/steps.tsv -v oversell=$d/oversell.tsv -f bench/checkout.awk $d/results.tsv

function ms(us) { return (us >= 100000) ? sprintf("%.0f ms", us / 1000) : sprintf("%.2f ms", us / 1000) }
function mib(kb) { return sprintf("%.1f MiB", kb / 1024) }
function us(x) { return (x >= 10000) ? sprintf("%.1f ms", x / 1000) : sprintf("%.0f µs", x) }
function has(b, name) { return (b SUBSEP name) in rps }
# One row with a cell per backend; `what` picks the cell's content.
function row(title, what,    b, line) {
    line = "| " title
    for (b = 1; b <= nb; b++) line = line " | " cell(backends[b], what)
    print line " |"
}
function cell(b, what,    n, s) {
    if (what == "orders") return (b in placed) ? sprintf("**%.0f**", placed[b]) : "—"
    if (what ~ /^step:/) {
        s = substr(what, 6)
        if (!((b SUBSEP s) in p99s)) return "—"
        return sprintf("%s / %s", ms(p50s[b, s]), (s == "place order") ? "**" ms(p99s[b, s]) "**" : ms(p99s[b, s]))
    }
    n = "checkout, " buyers " buyers"
    if (what == "errors") return has(b, n) ? sprintf("%d / %d", errs[b, n], step_errors[b]) : "—"
    if (what == "cpu") return (b in placed && placed[b] > 0) ? us(cpu[b, n] * requests[b, n] / orders_of[b]) : "—"
    if (what == "db cpu") return (b in placed && extra[b, n] > 0) ? us(extra[b, n] * requests[b, n] / orders_of[b]) : "—"
    if (what == "wrk cpu") return (b in placed) ? us(wrk[b, n] * requests[b, n] / orders_of[b]) : "—"
    if (what == "requests per order") return (b in placed) ? sprintf("%.2f", requests[b, n] / orders_of[b]) : "—"
    if (what == "peak") return has(b, n) ? mib(peak[b, n]) : "—"
    if (what == "other") return has(b, n) ? sprintf("%d%%", other[b, n]) : "—"
    if (what == "peak all") return (b in peak_all) ? mib(peak_all[b]) : "—"
    if (what == "idle") return (b in idle) ? mib(idle[b]) : "—"
    if (what == "idle after") return ((b "-after") in idle) ? mib(idle[b "-after"]) : "—"
    if (what ~ /^alone:/) {
        s = substr(what, 7)
        if (!has(b, s)) return "—"
        return sprintf("%s%.0f/s, p99 %s, %s CPU%s", (s == "add to cart") ? "**" : "", rps[b, s], ms(p99[b, s]),
            us(cpu[b, s]), (s == "add to cart") ? "**" : "") ((errs[b, s] > 0) ? sprintf(", %d errors", errs[b, s]) : "")
    }
    if (what == "place cpu") {
        # An order's Backroom CPU less what its other requests cost alone (the shipping method
        # change taken at the address's cost): what placing it costs, roughly.
        if (!(b in placed) || !has(b, "create cart") || !has(b, "add to cart") || !has(b, "set address")) return "—"
        return "≈ " us(cpu[b, n] * requests[b, n] / orders_of[b] - cpu[b, "create cart"] - 3 * cpu[b, "add to cart"] \
            - 2 * cpu[b, "set address"])
    }
    return "?"
}
function label(b) { return (b == "sqlite") ? "SQLite" : (b == "postgres") ? "PostgreSQL" : b }

BEGIN {
    FS = "\t"
    while ((getline line < machine) > 0) { i = index(line, "="); meta[substr(line, 1, i - 1)] = substr(line, i + 1) }
    while ((getline line < memory) > 0) { split(line, f, "\t"); idle[f[1]] = f[2] }
    while ((getline line < orders) > 0) {
        split(line, f, "\t")
        if (f[2] == "checkout") { orders_of[f[1]] = f[3]; placed[f[1]] = (f[4] > 0) ? f[3] / (f[4] / 1e6) : 0 }
        else { hot_orders[f[1]] = f[5]; refused_add[f[1]] = f[6]; refused_place[f[1]] = f[7] }
    }
    # The checkout run's steps come first in steps.tsv, the race's after them.
    while ((getline line < steps) > 0) {
        split(line, f, "\t")
        if ((f[1] SUBSEP f[2]) in p99s) continue
        p50s[f[1], f[2]] = f[4]; p99s[f[1], f[2]] = f[5]; step_errors[f[1]] += f[7]
    }
    while ((getline line < oversell) > 0) { split(line, f, "\t"); nv++; check[nv] = line }
    buyers = meta["connections"]
}
{
    if (!($2 in seen)) { seen[$2] = 1; backends[++nb] = $2 }
    rps[$2, $3] = $4; p99[$2, $3] = $6; peak[$2, $3] = $7; requests[$2, $3] = $8; errs[$2, $3] = $9
    cpu[$2, $3] = $10; other[$2, $3] = $11; wrk[$2, $3] = $13; extra[$2, $3] = $14
    if ($7 > peak_all[$2]) peak_all[$2] = $7
}
END {
    printf "%s cores (%s), %s; %s; wrk %s; Backroom %s; PostgreSQL %s.\n", meta["cores"], meta["cpu"], \
        meta["memory"], meta["date_utc"], meta["checkout_wrk_args"], meta["backroom_commit"], \
        ("postgres" in meta) ? meta["postgres"] : "not run"
    printf "Single request types: wrk %s.\n\n", meta["wrk_args"]
    header = "| " buyers " buyers, whole checkouts"; rule = "| ---"
    for (b = 1; b <= nb; b++) { header = header " | " label(backends[b]); rule = rule " | ---:" }
    print header " |"
    print rule " |"
    row("orders/s", "orders")
    row("create cart: p50 / p99", "step:create cart")
    row("add line (3 per order): p50 / p99", "step:add line")
    row("email and address: p50 / p99", "step:address")
    row("shipping method: p50 / p99", "step:shipping method")
    row("place order: p50 / p99", "step:place order")
    row("errors: wrk's (non-2xx, sockets) / the steps' (unexpected answers)", "errors")
    row("requests per order", "requests per order")
    row("Backroom CPU per order", "cpu")
    row("PostgreSQL CPU per order", "db cpu")
    row("wrk CPU per order", "wrk cpu")
    row("peak RSS", "peak")
    row("other load", "other")
    print ""
    header = "| each request type alone, " meta["connections"] " connections"; rule = "| ---"
    for (b = 1; b <= nb; b++) { header = header " | " label(backends[b]); rule = rule " | ---:" }
    print header " |"
    print rule " |"
    row("create cart", "alone:create cart")
    row("add to cart (a one-line cart)", "alone:add to cart")
    row("set email and address", "alone:set address")
    row("placing the order (an order's CPU less the others')", "place cpu")
    row("peak RSS, all runs", "peak all")
    row("idle RSS with the demo shop", "idle")
    row("idle RSS after its runs", "idle after")
    print ""
    print "| hot product | stock | orders placed (answered 201) | units sold (ledger) | orders holding it | order lines / sold movements | on hand at the end (lowest) | reserved at the end | refused at add / at placing | oversold |"
    print "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    for (i = 1; i <= nv; i++) {
        split(check[i], f, "\t")
        ok = f[5] >= 0 && f[3] >= 0 && f[3] == f[2] - f[7] && f[7] <= f[2] && f[8] == f[7] && f[6] == f[9] && f[10] == f[7] \
            && f[11] == 0 && f[12] == 0
        verdict[f[1]] = ok
        printf "| %s | %d | %d | %d | %d | %d / %d | %d (%d) | %d | %d / %d | %s |\n", label(f[1]), f[2], hot_orders[f[1]], \
            f[7], f[8], f[9], f[6], f[3], f[5], f[4], refused_add[f[1]], refused_place[f[1]], \
            ok ? "no" : sprintf("**YES, or inconsistent** (%d order lines without a sale, %d sales without a line)", f[11], f[12])
    }
    print ""
    print "| target | measured | met |"
    print "| --- | ---: | --- |"
    split("sqlite 500 postgres 300", t, " ")
    for (i = 1; i <= 3; i += 2) {
        b = t[i]
        if (!(b in placed)) continue
        printf "| at least %d orders/s on %s | %.0f | %s |\n", t[i + 1], label(b), placed[b], (placed[b] >= t[i + 1]) ? "yes" : "**no**"
        printf "| place-order p99 under 50 ms on %s (at the load above) | %s | %s |\n", label(b), ms(p99s[b, "place order"]), \
            (p99s[b, "place order"] < 50000) ? "yes" : "**no**"
        if (b in verdict) printf "| no oversell of the hot product on %s | %s | %s |\n", label(b), \
            verdict[b] ? "none" : "oversold", verdict[b] ? "yes" : "**no**"
    }
}
