-- Invoice numbers: one gapless sequence per year of issue. A number is allocated inside the
-- transaction that finalizes its invoice (the year's counter row stays locked until that
-- transaction ends), so a finalization that rolls back or dies gives its number back, and
-- concurrent finalizations take the next numbers in turn.
CREATE TABLE invoice_number_sequences (
    year        integer PRIMARY KEY CHECK (year BETWEEN 1970 AND 9999),
    last_number bigint  NOT NULL CHECK (last_number > 0)
);
