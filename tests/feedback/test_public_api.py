from crossfeed import feedback


def test_all_is_sorted_and_importable():
    assert feedback.__all__ == sorted(feedback.__all__)
    for name in feedback.__all__:
        assert hasattr(feedback, name), name
