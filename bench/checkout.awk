# Renders one run of bench/checkout.sh as Markdown. Input: results.tsv; variables: machine,
# memory, orders, steps, oversell, faults and statuses (the paths of machine.txt, memory.tsv,
# orders.tsv, steps.tsv, oversell.tsv, faults.tsv and statuses.tsv). Re-render a past run:
#   d=bench/results/<run>-checkout; awk -F'\t' -v machine=$d/machine.txt -v memory=$d/memory.tsv \
#       -v orders=$d/orders.tsv -v steps=$d/steps.tsv -v oversell=$d/oversell.tsv -v faults=$d/faults.tsv \
#       -v statuses=$d/statuses.tsv -f bench/checkout.awk $d/results.tsv

function ms(us) { return (us >= 100000) ? sprintf("%.0f ms", us / 1000) : sprintf("%.2f ms", us / 1000) }
function mib(kb) { return sprintf("%.1f MiB", kb / 1024) }
function us(x) { return (x >= 10000) ? sprintf("%.1f ms", x / 1000) : sprintf("%.0f µs", x) }
function has(b, name) { return (b SUBSEP name) in rps }
# `404=53 503=2` as "404 ×53, 503 ×2"; "none" when empty.
function answers(list,    n, i, kv, out) {
    n = split(list, parts, " ")
    for (i = 1; i <= n; i++) { split(parts[i], kv, "="); out = out ((i > 1) ? ", " : "") kv[1] " ×" kv[2] }
    return (n > 0) ? out : "none"
}
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
        if (!((b SUBSEP s) in p99s) || counts[b, s] == 0) return "— (no answer)"
        return sprintf("%s / %s", ms(p50s[b, s]), (s == "place order") ? "**" ms(p99s[b, s]) "**" : ms(p99s[b, s]))
    }
    n = "checkout, " buyers " buyers"
    if (what == "errors") return has(b, n) ? sprintf("%d / %d", errs[b, n], step_errors[b]) : "—"
    if (what == "answers") return ((b SUBSEP "checkout") in st) ? answers(st[b, "checkout"]) : "—"
    if (what == "cpu") return (orders_of[b] > 0) ? us(cpu[b, n] * requests[b, n] / orders_of[b]) : "—"
    if (what == "db cpu") return (orders_of[b] > 0 && extra[b, n] > 0) ? us(extra[b, n] * requests[b, n] / orders_of[b]) : "—"
    if (what == "wrk cpu") return (orders_of[b] > 0) ? us(wrk[b, n] * requests[b, n] / orders_of[b]) : "—"
    if (what == "requests per order") return (orders_of[b] > 0) ? sprintf("%.2f", requests[b, n] / orders_of[b]) : "—"
    if (what == "peak") return has(b, n) ? mib(peak[b, n]) : "—"
    if (what == "other") return has(b, n) ? sprintf("%d%%", other[b, n]) : "—"
    if (what == "peak all") return (b in peak_all) ? mib(peak_all[b]) : "—"
    if (what == "idle") return (b in idle) ? mib(idle[b]) : "—"
    if (what == "idle after") return ((b "-after") in idle) ? mib(idle[b "-after"]) : "—"
    if (what ~ /^alone:/) {
        s = substr(what, 7)
        if (!has(b, s)) return "—"
        return sprintf("%s%.0f/s, p99 %s, %s CPU%s", (s == "add to cart") ? "**" : "", rps[b, s], ms(p99[b, s]),
            us(cpu[b, s]), (s == "add to cart") ? "**" : "") ((st[b, s] != "") ? "; not 2xx: " answers(st[b, s]) : "")
    }
    if (what == "place cpu") {
        # An order's Backroom CPU less what its other requests cost alone (the shipping method
        # change taken at the address's cost): what placing it costs, roughly.
        if (!(orders_of[b] > 0) || !has(b, "create cart") || !has(b, "add to cart") || !has(b, "set address")) return "—"
        return "≈ " us(cpu[b, n] * requests[b, n] / orders_of[b] - cpu[b, "create cart"] - 3 * cpu[b, "add to cart"] \
            - 2 * cpu[b, "set address"])
    }
    return "?"
}
# sqlite, postgres, postgres-pool64...
function label(b,    name, pool) {
    name = b; sub(/-pool.*/, "", name); pool = b; sub(/^[^-]*(-pool)?/, "", pool)
    name = (name == "sqlite") ? "SQLite" : (name == "postgres") ? "PostgreSQL" : name
    return name ((pool != "") ? ", pool of " pool : "")
}

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
        counts[f[1], f[2]] = f[3]; p50s[f[1], f[2]] = f[4]; p99s[f[1], f[2]] = f[5]; step_errors[f[1]] += f[7]
    }
    while ((getline line < oversell) > 0) { split(line, f, "\t"); nv++; check[nv] = line }
    while ((getline line < faults) > 0) { split(line, f, "\t"); nf++; fault[nf] = line }
    while ((getline line < statuses) > 0) { split(line, f, "\t"); st[f[1], f[2]] = f[3] }
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
    single = meta["wrk_args"]; sub(/, sign-ins -c[0-9]+/, "", single)
    printf "Single request types: wrk %s.\n\n", single
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
    row("answers other than 2xx", "answers")
    row("errors: wrk's (non-2xx, sockets, timeouts) / the steps' (unexpected answers)", "errors")
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
        verdict[f[1]] = ok; sold[f[1]] = f[7]
        printf "| %s | %d | %d | %d | %d | %d / %d | %d (%d) | %d | %d / %d | %s |\n", label(f[1]), f[2], hot_orders[f[1]], \
            f[7], f[8], f[9], f[6], f[3], f[5], f[4], refused_add[f[1]], refused_place[f[1]], \
            ok ? ((f[7] > 0) ? "no" : "no (nothing sold)") : sprintf("**YES, or inconsistent** (%d order lines without a sale, %d sales without a line)", f[11], f[12])
    }
    print ""
    if (nf > 0) {
        for (i = 1; i <= nf; i++) {
            split(fault[i], f, "\t")
            printf "**%s stopped writing**: %s; its later runs were skipped.\n", label(f[1]), f[2]
        }
        print ""
    }
    print "| target | measured | met |"
    print "| --- | ---: | --- |"
    for (i = 1; i <= nb; i++) {
        b = backends[i]
        if (!(b in placed)) continue
        goal = (b ~ /^sqlite/) ? 500 : 300
        printf "| at least %d orders/s on %s | %.0f | %s |\n", goal, label(b), placed[b], (placed[b] >= goal) ? "yes" : "**no**"
        placing = (counts[b, "place order"] > 0)
        printf "| place-order p99 under 50 ms on %s (at the load above) | %s | %s |\n", label(b), \
            placing ? ms(p99s[b, "place order"]) : "no order placed", (placing && p99s[b, "place order"] < 50000) ? "yes" : "**no**"
    }
    for (i = 1; i <= nb; i++) {
        b = backends[i]
        if (!(b in verdict)) continue
        if (verdict[b] && sold[b] == 0) printf "| no oversell of the hot product on %s | nothing was sold | not shown |\n", label(b)
        else printf "| no oversell of the hot product on %s | %s | %s |\n", label(b), verdict[b] ? "none" : "oversold", \
            verdict[b] ? "yes" : "**no**"
    }
}
