# Spam into Junk, by the flag spambridge writes: X-Spam-Flag: YES (header-style=milter-spamc,
# and SpamAssassin's own with header-style=spamassassin), X-Spam: Yes (header-style=rspamd).
require ["fileinto"];
if anyof (header :is "X-Spam-Flag" "YES", header :is "X-Spam" "Yes") {
  fileinto "Junk";
  stop;
}
