//! Amounts: integer minor units of an ISO 4217 currency, positive and bounded; refunds never
//! exceed what was received and not yet refunded.

/// The largest amount one intent may carry (10^12 minor units): far above any PSP's limit,
/// far below where sums of amounts could overflow `i64`.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;

/// Why an amount is refused; `field` names the request field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field,
        reason: reason.into(),
    }
}

/// An ISO 4217 code: three upper-case letters.
pub fn check_currency(field: &'static str, c: &str) -> Result<(), Invalid> {
    if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(invalid(field, "an ISO 4217 code such as EUR"))
    }
}

pub fn check_amount(field: &'static str, amount: i64) -> Result<(), Invalid> {
    if amount > 0 && amount <= MAX_AMOUNT_MINOR {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("a positive number of minor units up to {MAX_AMOUNT_MINOR}"),
        ))
    }
}

/// The amount a refund request comes to: `requested` (0: all that is left) of what was
/// received and not refunded yet.
pub fn refundable(received: i64, refunded: i64, requested: i64) -> Result<i64, Invalid> {
    let left = received - refunded;
    if left <= 0 {
        return Err(invalid(
            "amount",
            "nothing of this payment is left to refund",
        ));
    }
    match requested {
        0 => Ok(left),
        r if r < 0 => Err(invalid("amount", "must be positive")),
        r if r > left => Err(invalid(
            "amount",
            format!("at most {left}, what is left of the payment"),
        )),
        r => Ok(r),
    }
}

/// The amount a capture comes to: `requested` (0: everything) of what was authorized.
pub fn capturable(authorized: i64, requested: i64) -> Result<i64, Invalid> {
    match requested {
        0 => Ok(authorized),
        r if r < 0 || r > authorized => Err(invalid(
            "amount_to_capture",
            format!("between 1 and the authorized {authorized}"),
        )),
        r => Ok(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn currencies_and_amounts() {
        assert!(check_currency("currency", "EUR").is_ok());
        for bad in ["eur", "EURO", "", "E1R"] {
            assert!(check_currency("currency", bad).is_err(), "{bad}");
        }
        assert!(check_amount("amount", 1).is_ok());
        for bad in [0, -1, MAX_AMOUNT_MINOR + 1] {
            assert_eq!(check_amount("amount", bad).unwrap_err().field, "amount");
        }
    }

    proptest! {
        /// However refunds are split, their sum never exceeds what was received.
        #[test]
        fn refunds_never_exceed_the_payment(
            received in 1i64..1_000_000,
            asks in proptest::collection::vec(0i64..400_000, 1..12),
        ) {
            let mut refunded = 0;
            for ask in asks {
                if let Ok(r) = refundable(received, refunded, ask) {
                    prop_assert!(r > 0);
                    refunded += r;
                }
                prop_assert!(refunded <= received);
            }
        }
    }
}
