package admin

import (
	"context"
	"fmt"

	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/tunnelapi"
)

// The account commands call Warren's account administration API through
// AccountClient; only the admin account's keys may.

var accountIDParam = param{name: "account-id", apiName: "accountId", kind: kindString, required: true, help: "The 12-digit ID of the account."}

// bandwidthSyntax is the value syntax of --bandwidth-limit, which
// tunnel.ParseBandwidth reads.
const bandwidthSyntax = "<limit>"

const bandwidthHelp = "Bytes per second, with an optional unit: 800KB, 4MB, 1.5MiB (KB, MB, GB are powers of 1000; KiB, MiB, GiB of 1024); 0 or unlimited for no limit; default for the server's default limit."

var createAccountCmd = &command{
	name:    "create-account",
	summary: "Creates an account and prints its ID and access keys (WarrenAccounts CreateAccount).",
	more: "The secret access key is shown only once.\n\n" +
		"With --credentials-file, the new keys are also written into that AWS shared credentials file as the profile named by\n" +
		"--profile (default: the account name), keeping the file's other profiles; then --profile names the profile to write,\n" +
		"and the request is signed with the default credentials (AWS_PROFILE, or the default profile).",
	params: []param{
		{name: "account-name", apiName: "accountName", kind: kindString, required: true,
			help: "A unique name for the account: 1 to 128 of a-z A-Z 0-9 _ . @ -."},
		{name: "bandwidth-limit", apiName: "bandwidthLimit", kind: kindString, syntax: bandwidthSyntax,
			help: "The account's bandwidth limit (when absent: default). " + bandwidthHelp},
		{name: "credentials-file", kind: kindString, syntax: "<path>",
			help: "Also write the new keys into this AWS shared credentials file (created or merged, mode 0600) as the profile --profile names."},
	},
	// With --credentials-file, --profile is the profile to write.
	ownsProfile: func(a parsedArgs) bool { return a.has("credentials-file") },
	run:         createAccount,
}

func createAccount(ctx context.Context, e *env, a parsedArgs) (any, error) {
	in := &tunnelapi.CreateAccountInput{AccountName: a.strp("account-name")}
	if a.has("bandwidth-limit") {
		n, err := bandwidthArg(a)
		if err != nil {
			return nil, err
		}
		in.BandwidthLimit = &n
	}
	var file *credentialsFile
	profile := a.str("account-name")
	if a.has("credentials-file") {
		if a.has("profile") {
			profile = a.str("profile")
		}
		if !validProfileName(profile) {
			return nil, &paramError{msg: fmt.Sprintf("Error parsing parameter '--profile': %q cannot name a profile in a credentials file", profile)}
		}
		var err error
		if file, err = readCredentialsFile(a.str("credentials-file")); err != nil {
			return nil, &paramError{msg: fmt.Sprintf("Error parsing parameter '--credentials-file': %v", err)}
		}
	}
	out, err := e.accounts().CreateAccount(ctx, in)
	if err != nil || file == nil {
		return out, err
	}
	if err := file.writeProfile(profile, out.AccessKeyID, out.SecretAccessKey); err != nil {
		// The keys exist only in this answer: print them anyway.
		return nil, &outputError{out: out, err: fmt.Errorf("account %s was created, but its keys could not be written to %s: %w", out.AccountID, file.path, err)}
	}
	return out, nil
}

// bandwidthArg parses --bandwidth-limit.
func bandwidthArg(a parsedArgs) (int64, error) {
	n, err := tunnel.ParseBandwidth(a.str("bandwidth-limit"))
	if err != nil {
		return 0, &paramError{msg: "Error parsing parameter '--bandwidth-limit': " + err.Error()}
	}
	return n, nil
}

var listAccountsCmd = &command{
	name:    "list-accounts",
	summary: "Lists accounts, oldest first, one page (WarrenAccounts ListAccounts).",
	params: []param{
		{name: "max-results", apiName: "maxResults", kind: kindInt, min: int64p(1), help: "The most accounts to return (1 to 100)."},
		{name: "next-token", apiName: "nextToken", kind: kindString, help: "The token of the page to return, from a previous nextToken."},
	},
	run: func(ctx context.Context, e *env, a parsedArgs) (any, error) {
		in := &tunnelapi.ListAccountsInput{NextToken: a.strp("next-token")}
		if n, ok := a["max-results"].(int64); ok {
			m := int32(min(n, 1<<31-1))
			in.MaxResults = &m
		}
		return e.accounts().ListAccounts(ctx, in)
	},
}

var describeAccountCmd = &command{
	name:    "describe-account",
	summary: "Describes an account, with its bandwidth and open tunnels (WarrenAccounts DescribeAccount).",
	more: "bandwidthLimit is the account's own limit in bytes per second (0: unlimited; absent: the server's default applies),\n" +
		"effectiveBandwidthLimit the limit in force (0: unlimited), currentRate the account's traffic in bytes per second.",
	params: []param{accountIDParam},
	run: func(ctx context.Context, e *env, a parsedArgs) (any, error) {
		return e.accounts().DescribeAccount(ctx, &tunnelapi.DescribeAccountInput{AccountID: a.strp("account-id")})
	},
}

var updateAccountCmd = &command{
	name:    "update-account",
	summary: "Sets an account's bandwidth limit and describes it (WarrenAccounts UpdateAccount).",
	more:    "The new limit applies to the account's open tunnels at once.",
	params: []param{
		accountIDParam,
		{name: "bandwidth-limit", apiName: "bandwidthLimit", kind: kindString, required: true, syntax: bandwidthSyntax, help: bandwidthHelp},
	},
	run: func(ctx context.Context, e *env, a parsedArgs) (any, error) {
		n, err := bandwidthArg(a)
		if err != nil {
			return nil, err
		}
		return e.accounts().UpdateAccount(ctx, &tunnelapi.UpdateAccountInput{AccountID: a.strp("account-id"), BandwidthLimit: &n})
	},
}

var deleteAccountCmd = &command{
	name:    "delete-account",
	summary: "Deletes an account with its things and tunnels (WarrenAccounts DeleteAccount). Prints nothing on success.",
	more: "Its open tunnels are closed and both their local proxies disconnected; its keys stop working at once.\n" +
		"The admin account cannot be deleted.",
	params: []param{accountIDParam},
	run: func(ctx context.Context, e *env, a parsedArgs) (any, error) {
		return e.accounts().DeleteAccount(ctx, &tunnelapi.DeleteAccountInput{AccountID: a.strp("account-id")})
	},
}
