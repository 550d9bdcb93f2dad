# The lmerTest 3.1-3 and lme4 1.1-31 output quoted by notebooks/tour.ipynb ("Tests and intervals") and
# notebooks/hsb.ipynb (sections 3 and 4): Rscript tests_and_intervals.R > tests_and_intervals.txt (R 4.2.2, Debian).
suppressMessages({library(lmerTest); library(mlmRev)})
options(width = 140, digits = 7)
ex <- lmer(normexam ~ standLRT + sex + schgend + (1 | school), Exam)
print(summary(ex)$coefficients, digits = 7)
print(confint(ex, oldNames = FALSE), digits = 7)
hsb <- Hsb82
full <- lmer(mAch ~ meanses * cses + sector * cses + (1 + cses | school), hsb)
print(summary(full)$coefficients, digits = 7)
print(anova(full), digits = 7)
print(confint(full, oldNames = FALSE), digits = 7)
slope <- lmer(mAch ~ cses + (1 + cses | school), hsb)
print(ranova(slope), digits = 7)
print(confint(slope, oldNames = FALSE), digits = 7)
