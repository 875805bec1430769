# rspamd's own example (its quick start guide): works unchanged with header-style=rspamd.
require ["fileinto"];

if header :is "X-Spam" "Yes" {
        fileinto "Junk";
}
