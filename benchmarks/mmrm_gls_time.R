# nlme's gls time for the benchmark case mmrm_10k (benchmarks/cases.py), for reference_times.json: the same
# data, model and criterion (REML), on the first 100, 300, 1,000 and 10,000 subjects; a fit that runs longer than
# LIMIT seconds is stopped and recorded as not finished.  nlme 3.1-162, R 4.2.2.
# Usage: Rscript mmrm_gls_time.R MMRM_10K.csv OUT.json [LIMIT]   (MMRM_10K.csv: benchmarks.data.mmrm_10k() by to_csv)
suppressMessages({library(nlme); library(jsonlite)})
args <- commandArgs(TRUE)
limit <- if (length(args) > 2) as.numeric(args[3]) else 3000
d <- read.csv(args[1])
d$visit <- factor(d$visit); d$arm <- factor(d$arm, levels = c("placebo", "active")); d$subject <- factor(d$subject)
d$v <- as.integer(d$visit)
out <- list(limit_seconds = limit)
for (n in c(100, 300, 1000, 10000)) {
  s <- d[d$subject %in% levels(d$subject)[seq_len(n)], ]
  start <- proc.time()[["elapsed"]]
  setTimeLimit(elapsed = limit, transient = TRUE)
  m <- tryCatch(gls(y ~ visit * arm + baseline, s, correlation = corSymm(form = ~ v | subject),
                    weights = varIdent(form = ~ 1 | visit), method = "REML"), error = function(e) NULL)
  setTimeLimit(elapsed = Inf)
  t <- proc.time()[["elapsed"]] - start
  out[[paste0("subjects_", n)]] <- if (is.null(m)) list(seconds = t, finished = FALSE) else
    list(seconds = t, finished = TRUE, REML_criterion = -2 * as.numeric(logLik(m)))
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), args[2])
  if (is.null(m)) break  # the larger sizes take longer still
}
