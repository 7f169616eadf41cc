"""Stop sequences split across streamed pieces are still cut exactly."""

from moe_domain_llms.streaming import StopTrimmer


def test_a_stop_split_across_pieces_is_never_shown():
    trimmer = StopTrimmer(["END"])
    shown = [trimmer.feed(piece) for piece in ["hello E", "N", "D and more"]]
    assert "".join(shown) == "hello " and trimmer.stopped
    assert trimmer.flush() == ""


def test_text_held_back_is_released_when_no_stop_comes():
    trimmer = StopTrimmer(["END"])
    assert trimmer.feed("almost E") == "almost"  # " E" could start "END"
    assert trimmer.feed("N") == " "  # "EN" still could
    assert trimmer.flush() == "EN"


def test_the_earliest_of_several_stops_wins():
    trimmer = StopTrimmer(["b", "a"])
    assert trimmer.feed("xxaxxb") == "xx"


def test_no_stops_passes_everything_through():
    trimmer = StopTrimmer([])
    assert trimmer.feed("abc") == "abc" and trimmer.flush() == ""
