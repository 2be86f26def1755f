ALTER TABLE wallet DROP CONSTRAINT wallet_currency_check;
ALTER TABLE wallet DROP COLUMN currency;
