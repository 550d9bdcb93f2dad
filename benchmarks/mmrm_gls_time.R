# nlme's gls time for the benchmark case mmrm_10k (benchmarks/cases.py), for reference_times.json: the same
# data, model and criterion (REML).  nlme 3.1-162, R 4.2.2.
# Usage: Rscript mmrm_gls_time.R MMRM_10K.csv OUT.json   (MMRM_10K.csv: benchmarks.data.mmrm_10k() by to_csv)
suppressMessages({library(nlme); library(jsonlite)})
args <- commandArgs(TRUE)
d <- read.csv(args[1])
d$visit <- factor(d$visit); d$arm <- factor(d$arm, levels = c("placebo", "active")); d$subject <- factor(d$subject)
d$v <- as.integer(d$visit)
out <- list()
for (n in c(1000, 10000)) {
  s <- d[d$subject %in% levels(d$subject)[seq_len(n)], ]
  t <- system.time(m <- gls(y ~ visit * arm + baseline, s, correlation = corSymm(form = ~ v | subject),
                            weights = varIdent(form = ~ 1 | visit), method = "REML"))[["elapsed"]]
  out[[paste0("subjects_", n)]] <- list(seconds = t, REML_criterion = -2 * as.numeric(logLik(m)))
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), args[2])
}
