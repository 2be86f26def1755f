ALTER TABLE wallet ADD COLUMN currency char(3) NOT NULL DEFAULT 'EUR';
ALTER TABLE wallet ADD CONSTRAINT wallet_currency_check CHECK (currency ~ '^[A-Z]{3}$');
