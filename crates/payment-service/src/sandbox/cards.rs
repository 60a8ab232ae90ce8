//! The sandbox's test cards, after Stripe's test mode: a token names a card (`pm_card_visa`,
//! or any test number as `pm_card_4000000000000002`), and the number decides what a charge
//! does.

/// What charging a card does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Succeeds,
    /// Declined with this decline code.
    Declines(&'static str),
    /// 3-D Secure: the customer must authenticate first.
    RequiresAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub number: String,
    pub brand: &'static str,
}

impl Card {
    /// The card a token names; `None` for a token the sandbox does not know.
    pub fn from_token(token: &str) -> Option<Card> {
        let number = match token.strip_prefix("pm_card_")? {
            "visa" => "4242424242424242",
            "mastercard" => "5555555555554444",
            "amex" => "378282246310005",
            "chargeDeclined" => "4000000000000002",
            "chargeDeclinedInsufficientFunds" => "4000000000009995",
            "threeDSecureRequired" | "authenticationRequired" => "4000002500003155",
            n if (12..=19).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return None,
        };
        let brand = match number.as_bytes()[0] {
            b'4' => "visa",
            b'5' | b'2' => "mastercard",
            b'3' => "amex",
            _ => "unknown",
        };
        Some(Card {
            number: number.to_string(),
            brand,
        })
    }

    pub fn last4(&self) -> &str {
        &self.number[self.number.len() - 4..]
    }

    pub fn behaviour(&self) -> Behaviour {
        match self.number.as_str() {
            "4000000000000002" => Behaviour::Declines("generic_decline"),
            "4000000000009995" => Behaviour::Declines("insufficient_funds"),
            "4000000000009987" => Behaviour::Declines("lost_card"),
            "4000000000000069" => Behaviour::Declines("expired_card"),
            "4000002500003155" | "4000002760003184" | "4000000000003220" => {
                Behaviour::RequiresAction
            }
            _ => Behaviour::Succeeds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_cards_behave_like_stripes() {
        let card = |t: &str| Card::from_token(t).unwrap();
        assert_eq!(card("pm_card_visa").behaviour(), Behaviour::Succeeds);
        assert_eq!(card("pm_card_visa").last4(), "4242");
        assert_eq!(
            card("pm_card_4000000000000002").behaviour(),
            Behaviour::Declines("generic_decline")
        );
        assert_eq!(
            card("pm_card_chargeDeclinedInsufficientFunds").behaviour(),
            Behaviour::Declines("insufficient_funds")
        );
        assert_eq!(
            card("pm_card_threeDSecureRequired").behaviour(),
            Behaviour::RequiresAction
        );
        assert_eq!(card("pm_card_mastercard").brand, "mastercard");
        for bad in ["pm_card_", "pm_card_12ab", "tok_visa", "pm_card_visa2"] {
            assert_eq!(Card::from_token(bad), None, "{bad}");
        }
    }
}
