# lme4's objectives and times for the benchmark cases of issue 15's shapes (benchmarks/cases.py), for
# reference_times.json.  Usage: Rscript lme4_shapes.R DIR OUT.json, DIR holding each case's data written by
# benchmarks/data.py (pandas' to_csv: crossed_sparse_10k.csv, crossed_100k.csv, nested_vector.csv, kb07_like.csv,
# ml1m_like.csv, crossed_vector_sparse.csv); cases whose file is missing are skipped.
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(TRUE)
cases <- list(
  crossed_sparse_10k = list(f = y ~ 1 + (1 | a) + (1 | b), REML = FALSE, factors = c("a", "b")),
  crossed_100k = list(f = y ~ 1 + (1 | a) + (1 | b), REML = FALSE, factors = c("a", "b")),
  nested_vector = list(f = y ~ x + (1 + x | a) + (1 + x | a:b), REML = TRUE, factors = c("a", "b")),
  kb07_like = list(f = y ~ 1 + a + b + c + (1 + a + b + c | subj) + (1 + a + b + c | item), REML = TRUE,
                   factors = c("subj", "item")),
  ml1m_like = list(f = y ~ 1 + (1 | user) + (1 | movie), REML = FALSE, factors = c("user", "movie")),
  crossed_vector_sparse = list(f = y ~ x + (1 + x | rater) + (1 + x | item), REML = TRUE,
                               factors = c("rater", "item"))
)
out <- list()
for (name in names(cases)) {
  cs <- cases[[name]]
  path <- file.path(args[1], paste0(name, ".csv"))
  if (!file.exists(path)) next
  d <- read.csv(path)
  for (f in cs$factors) d[[f]] <- factor(d[[f]])
  secs <- system.time(m <- lmer(cs$f, d, REML = cs$REML))[["elapsed"]]
  out[[name]] <- list(seconds = secs, objective = if (cs$REML) REMLcrit(m) else deviance(m),
                      optimizer = m@optinfo$optimizer, feval = m@optinfo$feval)
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), args[2])
}
m <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial)
out$cbpp <- list(seconds = median(replicate(5, system.time(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd),
                                                               cbpp, family = binomial))[["elapsed"]])),
                 objective = deviance(m), objective_minus2loglik = -2 * as.numeric(logLik(m)))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), args[2])
