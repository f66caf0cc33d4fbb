"""The one PRC ID check digit, against numbers worked by hand."""
from shared.idcard import check_digit, with_check_digit


def test_a_known_card_number_ends_in_x():
    assert check_digit("11010519491231002") == "X"


def test_a_completed_number_is_the_17_digits_and_their_check_character():
    assert with_check_digit("44052418800101001") == "440524188001010014"
