"""training_search: ranks layouts by tokens/day, drops infeasible ones with a reason."""

from planner.training_search import training_search


def test_search_ranks_feasible_layouts_first():
    df = training_search("llama-3.1-8b", "h800-mrft", 16, 4096, 64, tp_options=(1, 2), pp_options=(1, 2, 4),
                         schedules=("1f1b", "zb1p"))
    assert len(df) == 12
    feas = df[df.feasible]
    assert len(feas) > 0 and list(feas.tokens_per_day) == sorted(feas.tokens_per_day, reverse=True)
    assert (df.dp * df.tp * df.pp == 16).all()


def test_search_memory_limit_rejects_with_reason():
    df = training_search("llama-3.1-8b", "h800-mrft", 8, 4096, 32, memory_limit_gb=10, tp_options=(1,),
                         pp_options=(1, 2), schedules=("1f1b",))
    assert not df.feasible.any()
    assert df.reason.str.contains("out of memory").all()
