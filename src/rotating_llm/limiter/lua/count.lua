-- Count one ARGV[COUNT_CODE] event of key ARGV[COUNT_KEY_ID] ('' for the pool itself)
-- in this minute's rates bucket (a refusal the caller saw: code RATE_REFUSED).
count_rate(ARGV[COUNT_CODE], ARGV[COUNT_KEY_ID])
return 1
