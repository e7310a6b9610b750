# Plots of bench/compare/compare.py's results, one line per variant, log x.
# Called by compare.py with -e "datadir=...; outdir=...; setup=...; v_req_per_s='a b'; v_p99_ms=...; v_peak_rss_kib=..."
# (the v_* lists name the variants that have data for that metric; empty skips the plot).
# Data files: <datadir>/<metric>-<variant>.dat, three columns: concurrency, value, failed (0/1).
# A failed point (see the CSV's status) is circled: its numbers cover only what was served.

if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
  set terminal pngcairo size 900,560 font "sans,11"
} else {
  set terminal png size 900,560
}
set termoption noenhanced  # variant names have underscores
set logscale x 10
set xlabel "concurrent connections (wrk -c)"
set grid
set key top left
set style data linespoints

if (strlen(v_req_per_s) > 0) {
  set output outdir."/throughput.png"
  set title "Throughput\n".setup
  set ylabel "requests/s"
  set yrange [0:*]
  plot for [v in v_req_per_s] datadir."/req_per_s-".v.".dat" using 1:2 title v lw 2 pt 7, \
       for [v in v_req_per_s] datadir."/req_per_s-".v.".dat" using 1:($3 > 0 ? $2 : 1/0) \
           with points pt 6 ps 3 lw 2 lc rgb "red" title (v eq word(v_req_per_s, 1) ? "failed point" : "")
}

if (strlen(v_p99_ms) > 0) {
  set output outdir."/p99_latency.png"
  set title "p99 latency\n".setup
  set ylabel "ms (log)"
  set autoscale y
  set logscale y 10
  plot for [v in v_p99_ms] datadir."/p99_ms-".v.".dat" using 1:2 title v lw 2 pt 7, \
       for [v in v_p99_ms] datadir."/p99_ms-".v.".dat" using 1:($3 > 0 ? $2 : 1/0) \
           with points pt 6 ps 3 lw 2 lc rgb "red" title (v eq word(v_p99_ms, 1) ? "failed point" : "")
}

if (strlen(v_peak_rss_kib) > 0) {
  set output outdir."/peak_rss.png"
  set title "Server peak RSS (VmHWM)\n".setup
  set ylabel "MiB (log)"
  set autoscale y
  set logscale y 10
  plot for [v in v_peak_rss_kib] datadir."/peak_rss_kib-".v.".dat" using 1:2 title v lw 2 pt 7, \
       for [v in v_peak_rss_kib] datadir."/peak_rss_kib-".v.".dat" using 1:($3 > 0 ? $2 : 1/0) \
           with points pt 6 ps 3 lw 2 lc rgb "red" title (v eq word(v_peak_rss_kib, 1) ? "failed point" : "")
}
set output
