# Spam into Junk, by spamtest: 100 % is a score at or above the maximum the
# sieve_spamtest_* settings give (the spam threshold). Needs spamtestplus enabled.
require ["spamtestplus", "fileinto", "relational", "comparator-i;ascii-numeric"];
if spamtest :percent :value "ge" :comparator "i;ascii-numeric" "100" {
  fileinto "Junk";
  stop;
}
