# Draws bench/compare.png from bench/compare.dat (written by `cargo bench --bench compare`).
set terminal pngcairo size 1100,560 font "DejaVu Sans,10" noenhanced
set output "bench/compare.png"
set multiplot layout 1,2 title "registry-mirror beside the alternatives (one run, 127.0.0.1, 2 cores)"
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.7
set grid ytics
set xtics rotate by -30 left
set key off
set yrange [0:*]
set bmargin 9
set title "blob throughput (MB/s, higher is better)"
plot "bench/compare.dat" using 2:xtic(1) lc rgb "#3b6ea5"
set title "manifest GET p50 (ms, lower is better)"
plot "bench/compare.dat" using 3:xtic(1) lc rgb "#c0504d"
unset multiplot
