-- Why a subscription is suspended: the operator suspended the tenant, or dunning ran out on
-- an unpaid invoice. Both can hold at once; the subscription is active again only when
-- neither does (a payment does not lift an operator's suspension).
ALTER TABLE subscriptions ADD COLUMN tenant_suspended boolean NOT NULL DEFAULT false;
ALTER TABLE subscriptions ADD COLUMN payment_suspended boolean NOT NULL DEFAULT false;
UPDATE subscriptions SET tenant_suspended = true WHERE status = 'suspended';
