# PROTOCOL=paper|holdout, shared by the recipes (include it before OUT is set).
#
# paper (default): select (per-epoch validation) and report on the data set's own val/test split,
#   as the papers did.
# holdout: HOLDOUT training images are carved out of train (`holdout=N` on the data spec, a
#   fixed seeded draw, prunecli/data/holdout.py); training selects and analyses on them, and the
#   reported numbers come from the untouched val/test split (`evaluate --split test`).
# $(call with_protocol,SPEC[,N]) is SPEC with `holdout=N` (default $(HOLDOUT)) added under
# PROTOCOL=holdout; $(EVAL_SPLIT) goes on the evaluations whose numbers are reported;
# $(SELECT_BEST) (holdout only) keeps the epoch best on the holdout (`--select best`, issue 13's
# selection work). Each protocol gets its own OUT by default.
PROTOCOL ?= paper
ifeq ($(PROTOCOL),holdout)
with_protocol = $(1)$(if $(findstring ?,$(1)),&,?)holdout=$(or $(2),$(HOLDOUT))
SELECT_BEST = --select best
EVAL_SPLIT = --split test
OUT ?= runs-holdout
else ifeq ($(PROTOCOL),paper)
with_protocol = $(1)
EVAL_SPLIT = --split val
SELECT_BEST =
OUT ?= runs
else
$(error PROTOCOL: use paper or holdout, not $(PROTOCOL))
endif
