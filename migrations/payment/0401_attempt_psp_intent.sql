-- The PSP intent an attempt confirmed (Stripe's pi_…); NULL when the attempt created it. A
-- re-ask must repeat exactly the request first sent under the attempt's key.
ALTER TABLE payment_attempts ADD COLUMN psp_intent_id text;
