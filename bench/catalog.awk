# Renders one run of bench/catalog.sh as Markdown. Input: results.tsv; variables: machine,
# memory and imports (the paths of machine.txt, memory.tsv and import.tsv). Re-render a past run:
#   d=bench/results/<run>-catalog; awk -F'\t' -v machine=$d/machine.txt -v memory=$d/memory.tsv \
#       -v imports=$d/import.tsv -f bench/catalog.awk $d/results.tsv

function ms(us) { return (us >= 100000) ? sprintf("%.0f ms", us / 1000) : sprintf("%.2f ms", us / 1000) }
function mib(kb) { return sprintf("%.1f MiB", kb / 1024) }
function times(a, b) { return (b > 0) ? sprintf("%.1f×", a / b) : "n/a" }
function rps_of(server, name) { return ((server SUBSEP name) in rps) ? rps[server, name] : 0 }

BEGIN {
    FS = "\t"
    while ((getline line < machine) > 0) { i = index(line, "="); meta[substr(line, 1, i - 1)] = substr(line, i + 1) }
    while ((getline line < memory) > 0) { split(line, f, "\t"); idle[f[1]] = f[2] }
    while ((getline line < imports) > 0) { split(line, f, "\t"); imported[f[1]] = f[4]; products = f[2]; rows_in = f[3] }
    # The PocketBase scenario each Backroom scenario is compared with.
    peer["list 20"] = "list 20, skipTotal"
    peer["product by handle (2,000 products)"] = "record by id (2,000 records)"
    peer["search 'cotton', with facets"] = "title contains 'cotton', skipTotal"
    peer["category t-shirts, 20"] = "category t-shirts, skipTotal"
}
# Storefront pages are compared with PocketBase's read of one record.
function peer_of(name) {
    if (name in peer) return peer[name]
    if (name ~ /page HTML/) return "record by id (2,000 records)"
    return ""
}
{ row[++rows] = $0; rps[$2, $3] = $4; p99[$2, $3] = $6; if ($2 == "backroom" && $7 > peak) peak = $7 }
END {
    printf "%s cores (%s), %s; %s; wrk %s; Backroom %s; PocketBase %s; %d products, %d variant rows.\n\n", \
        meta["cores"], meta["cpu"], meta["memory"], meta["date_utc"], meta["wrk_args"], meta["backroom_commit"], \
        ("pocketbase" in meta) ? meta["pocketbase"] : "not run", products, rows_in
    print "| server | scenario | requests/s | p50 | p99 | peak RSS | server CPU per request | errors | other load | × PocketBase |"
    print "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for (i = 1; i <= rows; i++) {
        split(row[i], f, "\t")
        vs = "—"
        if (f[2] == "backroom" && peer_of(f[3]) != "") vs = times(f[4], rps_of("pocketbase", peer_of(f[3])))
        printf "| %s | %s | %.0f | %s | %s | %s | %.0f µs | %d | %d%% | %s |\n", f[2], f[3], f[4], ms(f[5]), ms(f[6]), \
            mib(f[7]), f[10], f[9], f[11], vs
    }
    print ""
    print "| server | loading the catalog | idle RSS with the catalog | idle RSS after its runs |"
    print "| --- | ---: | ---: | ---: |"
    split("backroom pocketbase", servers, " ")
    how["backroom"] = "`backroom import products` (CSV, SQLite)"
    how["pocketbase"] = "REST batch API, 500 records a request"
    for (s = 1; s <= 2; s++) {
        server = servers[s]
        if (!(server in imported)) continue
        printf "| %s | %.1f s (%s) | %s | %s |\n", server, imported[server] / 1000, how[server], mib(idle[server]), \
            ((server "-after") in idle) ? mib(idle[server "-after"]) : "—"
    }
    print ""
    list = rps_of("backroom", "list 20"); pb_list = rps_of("pocketbase", "list 20, skipTotal")
    get = rps_of("backroom", "product by handle (2,000 products)"); pb_get = rps_of("pocketbase", "record by id (2,000 records)")
    page = rps_of("backroom", "product page HTML, 200 pages (warm)")
    cold = 0
    for (key in rps) { split(key, k, SUBSEP); if (k[1] == "backroom" && k[2] ~ /^product page HTML, .* \(cold\)$/) cold = rps[key] }
    search = p99["backroom", "search 'cotton', with facets"]; searches = p99["backroom", "search, 300 queries, with facets"]
    fresh = p99["backroom", "search, 30,000 queries, none cached"]
    print "| target | measured | met |"
    print "| --- | ---: | --- |"
    printf "| list 20: at least 5× PocketBase's requests/s | %s | %s |\n", times(list, pb_list), (pb_list > 0 && list >= 5 * pb_list) ? "yes" : "**no**"
    printf "| product: at least 5× PocketBase's requests/s | %s | %s |\n", times(get, pb_get), (pb_get > 0 && get >= 5 * pb_get) ? "yes" : "**no**"
    printf "| product page HTML (warm): at least 5× PocketBase's record requests/s | %s | %s |\n", times(page, pb_get), (pb_get > 0 && page >= 5 * pb_get) ? "yes" : "**no**"
    printf "| product page HTML (cold): at least 5× PocketBase's record requests/s | %s | %s |\n", times(cold, pb_get), (pb_get > 0 && cold >= 5 * pb_get) ? "yes" : "**no**"
    printf "| search p99 under 10 ms at %s connections (one word) | %s | %s |\n", meta["connections"], ms(search), (search < 10000) ? "yes" : "**no**"
    printf "| search p99 under 10 ms at %s connections (300 queries) | %s | %s |\n", meta["connections"], ms(searches), (searches < 10000) ? "yes" : "**no**"
    printf "| search p99 under 10 ms at %s connections (30,000 queries, none cached) | %s | %s |\n", meta["connections"], ms(fresh), (fresh < 10000) ? "yes" : "**no**"
    printf "| RSS under load under 150 MB | %s | %s |\n", mib(peak), (peak * 1024 < 150 * 1000 * 1000) ? "yes" : "**no**"
    printf "| %d-product import under 10 s on SQLite | %.1f s | %s |\n", products, imported["backroom"] / 1000, (imported["backroom"] < 10000) ? "yes" : "**no**"
}
