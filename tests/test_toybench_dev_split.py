"""The ToyBench development split shares no caption and no object set with the test suite."""

from prompts.suites import load_suite


def test_dev_split_is_disjoint_from_the_test_suite():
    from generators.toyworld.world import parse

    def objects(prompt):
        return frozenset(o.index for o in parse(prompt).objects)

    dev = load_suite("toybench-dev")
    test = load_suite("toybench")
    assert len(dev) == 16 and {e.category for e in dev} == {"dev_two_objects"}
    assert not {e.prompt for e in dev} & {e.prompt for e in test}
    # not even the same two objects in the other order
    assert not {objects(e.prompt) for e in dev} & {objects(e.prompt) for e in test}
    assert len({objects(e.prompt) for e in dev}) == 16
