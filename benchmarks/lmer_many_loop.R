# lme4's time for the lmer_many_10k case: a loop of lmer over 200 of the 10,000 genes, extrapolated.
# The genes come from benchmarks.data.expression(); write them first with
#   python -c "from benchmarks.data import expression; import numpy as np
#   s, g = expression(); idx = np.linspace(0, g.shape[1] - 1, 200).astype(int)
#   s.join(__import__('pandas').DataFrame(g[:, idx], columns=[f'g{j}' for j in idx])).to_csv('expr200.csv', index=False)"
# then: Rscript benchmarks/lmer_many_loop.R expr200.csv
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$donor <- factor(d$donor)
d$batch <- factor(d$batch)
genes <- grep("^g", names(d), value = TRUE)
invisible(lmer(as.formula(paste(genes[1], "~ x + (1 | donor) + (1 | batch)")), d))
times <- sapply(1:3, function(rep) {
  system.time(for (g in genes) lmer(as.formula(paste(g, "~ x + (1 | donor) + (1 | batch)")), d))[["elapsed"]]
})
cat(sprintf(
  "lme4 %s: loop over %d genes: %s s; per 10,000: %.0f-%.0f s\n", packageVersion("lme4"), length(genes),
  paste(round(times, 1), collapse = ", "), min(times) / length(genes) * 1e4, max(times) / length(genes) * 1e4
))
