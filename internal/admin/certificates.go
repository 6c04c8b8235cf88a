package admin

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
)

// The device identity commands call the AWS IoT API through the SDK, with
// the AWS CLI's names, flags and output.

var principalParam = param{name: "principal", apiName: "principal", kind: kindString, required: true,
	help: "The principal: the ARN of a certificate (certificateArn of create-keys-and-certificate)."}

var certificateIDParam = param{name: "certificate-id", apiName: "certificateId", kind: kindString, required: true,
	help: "The ID of the certificate (the last part of its ARN)."}

var createKeysAndCertificateCmd = &command{
	name:    "create-keys-and-certificate",
	summary: "Creates a key pair and a device certificate signed by the server's device CA (AWS IoT CreateKeysAndCertificate).",
	more: "The private key is returned only this once; the server keeps no copy. A device connects to the MQTT\n" +
		"broker (describe-endpoint) with the certificate and key, trusting the server's CA (ca.pem in its data directory).",
	params: []param{
		{name: "set-as-active", apiName: "setAsActive", kind: kindBool, help: "Whether the certificate is ACTIVE (default: INACTIVE)."},
		{name: "certificate-pem-outfile", kind: kindString, syntax: "<path>", help: "Also write the certificate (PEM) to this file."},
		{name: "public-key-outfile", kind: kindString, syntax: "<path>", help: "Also write the public key (PEM) to this file."},
		{name: "private-key-outfile", kind: kindString, syntax: "<path>", help: "Also write the private key (PEM) to this file, readable by its owner only."},
	},
	run: createKeysAndCertificate,
}

type keyPairOutput struct {
	PublicKey  string `json:"PublicKey,omitempty"`
	PrivateKey string `json:"PrivateKey,omitempty"`
}

type createKeysAndCertificateOutput struct {
	CertificateArn string         `json:"certificateArn,omitempty"`
	CertificateID  string         `json:"certificateId,omitempty"`
	CertificatePem string         `json:"certificatePem,omitempty"`
	KeyPair        *keyPairOutput `json:"keyPair,omitempty"`
}

func createKeysAndCertificate(ctx context.Context, e *env, a parsedArgs) (any, error) {
	in := &iot.CreateKeysAndCertificateInput{}
	if v, ok := a["set-as-active"].(bool); ok {
		in.SetAsActive = v
	}
	res, err := e.iot().CreateKeysAndCertificate(ctx, in)
	if err != nil {
		return nil, err
	}
	out := &createKeysAndCertificateOutput{
		CertificateArn: aws.ToString(res.CertificateArn),
		CertificateID:  aws.ToString(res.CertificateId),
		CertificatePem: aws.ToString(res.CertificatePem),
	}
	if res.KeyPair != nil {
		out.KeyPair = &keyPairOutput{PublicKey: aws.ToString(res.KeyPair.PublicKey), PrivateKey: aws.ToString(res.KeyPair.PrivateKey)}
	}
	// As the AWS CLI: the files are written after the call, and a failure
	// to write one still prints the output (the key exists nowhere else).
	files := []struct {
		param, data string
		mode        os.FileMode
	}{
		{"certificate-pem-outfile", out.CertificatePem, 0o644},
		{"public-key-outfile", keyOf(out, false), 0o644},
		{"private-key-outfile", keyOf(out, true), 0o600},
	}
	for _, f := range files {
		path := a.str(f.param)
		if path == "" {
			continue
		}
		if err := os.WriteFile(path, []byte(f.data), f.mode); err != nil {
			return nil, &outputError{out: out, err: fmt.Errorf("--%s: %w", f.param, err)}
		}
	}
	return out, nil
}

func keyOf(out *createKeysAndCertificateOutput, private bool) string {
	if out.KeyPair == nil {
		return ""
	}
	if private {
		return out.KeyPair.PrivateKey
	}
	return out.KeyPair.PublicKey
}

var describeCertificateCmd = &command{
	name:    "describe-certificate",
	summary: "Describes a device certificate (AWS IoT DescribeCertificate).",
	params:  []param{certificateIDParam},
	run: func(ctx context.Context, e *env, a parsedArgs) (any, error) {
		res, err := e.iot().DescribeCertificate(ctx, &iot.DescribeCertificateInput{CertificateId: aws.String(a.str("certificate-id"))})
		if err != nil {
			return nil, err
		}
		type description struct {
			CertificateArn string     `json:"certificateArn,omitempty"`
			CertificateID  string     `json:"certificateId,omitempty"`
			Status         string     `json:"status,omitempty"`
			CertificatePem string     `json:"certificatePem,omitempty"`
			OwnedBy        string     `json:"ownedBy,omitempty"`
			CreationDate   *time.Time `json:"creationDate,omitempty"`
		}
		d := res.CertificateDescription
		if d == nil {
			return struct{}{}, nil
		}
		return struct {
			CertificateDescription description `json:"certificateDescription"`
		}{description{aws.ToString(d.CertificateArn), aws.ToString(d.CertificateId), string(d.Status),
			aws.ToString(d.CertificatePem), aws.ToString(d.OwnedBy), d.CreationDate}}, nil
	},
}

var updateCertificateCmd = &command{
	name:    "update-certificate",
	summary: "Sets a device certificate's status (AWS IoT UpdateCertificate); devices connected with one that stops being ACTIVE are disconnected. Prints nothing on success.",
	params: []param{
		certificateIDParam,
		{name: "new-status", apiName: "newStatus", kind: kindString, required: true, syntax: "ACTIVE | INACTIVE | REVOKED",
			help: "The new status; REVOKED is final."},
	},
	run: func(ctx context.Context, e *env, a parsedArgs) (any, error) {
		_, err := e.iot().UpdateCertificate(ctx, &iot.UpdateCertificateInput{
			CertificateId: aws.String(a.str("certificate-id")), NewStatus: types.CertificateStatus(a.str("new-status"))})
		return nil, err
	},
}

var attachThingPrincipalCmd = &command{
	name:    "attach-thing-principal",
	summary: "Attaches a certificate to a thing (AWS IoT AttachThingPrincipal): its device may then use the thing's MQTT topics. Prints nothing on success.",
	params:  []param{thingNameParam, principalParam},
	run: func(ctx context.Context, e *env, a parsedArgs) (any, error) {
		_, err := e.iot().AttachThingPrincipal(ctx, &iot.AttachThingPrincipalInput{
			ThingName: aws.String(a.str("thing-name")), Principal: aws.String(a.str("principal"))})
		return nil, err
	},
}

var detachThingPrincipalCmd = &command{
	name:    "detach-thing-principal",
	summary: "Detaches a certificate from a thing (AWS IoT DetachThingPrincipal). Prints nothing on success.",
	params:  []param{thingNameParam, principalParam},
	run: func(ctx context.Context, e *env, a parsedArgs) (any, error) {
		_, err := e.iot().DetachThingPrincipal(ctx, &iot.DetachThingPrincipalInput{
			ThingName: aws.String(a.str("thing-name")), Principal: aws.String(a.str("principal"))})
		return nil, err
	},
}

var listThingPrincipalsCmd = &command{
	name:    "list-thing-principals",
	summary: "Lists the certificates attached to a thing, one page (AWS IoT ListThingPrincipals).",
	params: []param{
		thingNameParam,
		{name: "max-results", apiName: "maxResults", kind: kindInt, min: int64p(1), help: "The most principals to return."},
		{name: "next-token", apiName: "nextToken", kind: kindString, help: "The token of the page to return, from a previous nextToken."},
	},
	run: func(ctx context.Context, e *env, a parsedArgs) (any, error) {
		in := &iot.ListThingPrincipalsInput{ThingName: aws.String(a.str("thing-name"))}
		if n, ok := a["max-results"].(int64); ok {
			in.MaxResults = aws.Int32(int32(min(n, 1<<31-1)))
		}
		if a.has("next-token") {
			in.NextToken = aws.String(a.str("next-token"))
		}
		res, err := e.iot().ListThingPrincipals(ctx, in)
		if err != nil {
			return nil, err
		}
		return struct {
			Principals []string `json:"principals"`
			NextToken  string   `json:"nextToken,omitempty"`
		}{append([]string{}, res.Principals...), aws.ToString(res.NextToken)}, nil
	},
}

var describeEndpointCmd = &command{
	name:    "describe-endpoint",
	summary: "Returns the MQTT broker's address, host:port (AWS IoT DescribeEndpoint).",
	params: []param{
		{name: "endpoint-type", apiName: "endpointType", kind: kindString, syntax: "iot:Data-ATS", help: "The endpoint type: iot:Data-ATS (the default here)."},
	},
	run: func(ctx context.Context, e *env, a parsedArgs) (any, error) {
		in := &iot.DescribeEndpointInput{}
		if a.has("endpoint-type") {
			in.EndpointType = aws.String(a.str("endpoint-type"))
		}
		res, err := e.iot().DescribeEndpoint(ctx, in)
		if err != nil {
			return nil, err
		}
		return struct {
			EndpointAddress string `json:"endpointAddress,omitempty"`
		}{aws.ToString(res.EndpointAddress)}, nil
	},
}
