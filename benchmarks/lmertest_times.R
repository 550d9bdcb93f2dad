# lmerTest's and pbkrtest's own times for the benchmark cases that time an analysis (benchmarks/cases.py,
# `action`), for reference_times.json: the same models and the same summaries and type 3 F tables.
# lmerTest 3.1-3, pbkrtest 0.5.2, lme4 1.1-31.  Usage: Rscript lmertest_times.R CROSSED_10K.csv OUT.json
# (CROSSED_10K.csv: benchmarks.data.crossed_10k() written by pandas' to_csv).
suppressMessages({library(lmerTest); library(jsonlite)})
args <- commandArgs(TRUE)
elapsed <- function(expr) system.time(expr)[["elapsed"]]
out <- list()
save <- function() writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), args[2])

m <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy)
out$sleepstudy_kr <- list(
  seconds = median(replicate(5, elapsed({summary(m, ddf = "Kenward-Roger"); anova(m, ddf = "Kenward-Roger")}))),
  what = "summary(m, ddf = 'Kenward-Roger') and anova(m, ddf = 'Kenward-Roger')")
save()

fit <- elapsed(m0 <- lme4::lmer(y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept), InstEval))
satt <- elapsed({ms <- as_lmerModLmerTest(m0); summary(ms); anova(ms, type = 3)})
out$insteval_satterthwaite <- list(
  seconds = satt, fit_seconds = fit,
  what = "as_lmerModLmerTest(m) (the Hessian and Jacobian lmerTest::lmer computes after the fit), summary, anova")
save()

d <- read.csv(args[1])
d$subject <- factor(d$subject); d$item <- factor(d$item)
mc <- lmer(y ~ x + (1 + x | subject) + (1 + x | item), d)
one <- elapsed(pbkrtest::vcovAdj(mc))
out$crossed_10k_kr <- list(seconds_one_vcovAdj = one,
                           what = "one pbkrtest::vcovAdj(m) (n x n matrices); lmerTest's KR summary computes it once per coefficient, its anova once per term")
save()
whole <- elapsed({summary(mc, ddf = "Kenward-Roger"); anova(mc, ddf = "Kenward-Roger")})
out$crossed_10k_kr$seconds <- whole
out$crossed_10k_kr$what <- "summary(m, ddf = 'Kenward-Roger') and anova(m, ddf = 'Kenward-Roger')"
save()
