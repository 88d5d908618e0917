package certs

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// maxSecretAttempts bounds the read-evaluate-write loop on the Secret. Each
// lost race means another replica just stored fresh material, which the next
// read adopts, so more than a few rounds means something else is wrong.
const maxSecretAttempts = 5

// outcome tells the Rotator whether to come back soon.
type outcome struct {
	// missingTargets counts named webhook configurations and CRDs that do
	// not exist yet and so could not get the CA bundle.
	missingTargets int
}

// Ensure makes the webhook serving material current, once: the Secret holds
// a valid CA and serving certificate (created, repaired or rotated as the
// rotation rule in Options says), the CA bundle is in every named webhook
// configuration and CRD, and CertDir holds the files. It is idempotent and
// makes no API writes when everything is already in place.
//
// Use a client that reads from the API server, not from the manager's cache:
// Ensure runs before the cache starts, and a cache would have to watch all
// Secrets to serve it.
func Ensure(ctx context.Context, c client.Client, opts Options) error {
	_, err := ensure(ctx, c, opts)
	return err
}

func ensure(ctx context.Context, c client.Client, opts Options) (outcome, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return outcome{}, err
	}
	m, err := ensureSecret(ctx, c, opts)
	if err != nil {
		return outcome{}, err
	}
	// Publish before serving: the API server then already trusts the CA of
	// the files about to be written. Until then it keeps calling a server
	// whose old files its old bundle trusts.
	missing, err := publishCABundle(ctx, c, opts, m.CABundle)
	if err != nil {
		return outcome{}, err
	}
	if err := writeFiles(ctx, opts.CertDir, m.files()); err != nil {
		return outcome{}, err
	}
	return outcome{missingTargets: missing}, nil
}

// ensureSecret returns the material the Secret holds once it is valid,
// writing the Secret only when it is missing or the material needs renewal.
func ensureSecret(ctx context.Context, c client.Client, opts Options) (keyMaterial, error) {
	key := client.ObjectKey{Namespace: opts.Namespace, Name: opts.SecretName}
	for range maxSecretAttempts {
		secret := &corev1.Secret{}
		err := c.Get(ctx, key, secret)
		exists := err == nil
		if err != nil && !apierrors.IsNotFound(err) {
			return keyMaterial{}, fmt.Errorf("get secret %s: %w", key, err)
		}
		current := materialFromSecret(secret)
		now := opts.now()
		want, plan, err := reconcileMaterial(current, opts, now)
		if err != nil {
			return keyMaterial{}, fmt.Errorf("renew certificates in secret %s: %w", key, err)
		}
		if want.equal(current) {
			return current, nil
		}
		if !exists {
			secret = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
				Type:       corev1.SecretTypeTLS,
			}
		}
		lostRace, err := storeMaterial(ctx, c, secret, exists, want)
		if err != nil {
			return keyMaterial{}, fmt.Errorf("store certificates in secret %s: %w", key, err)
		}
		if lostRace {
			continue // another replica wrote first; adopt what it stored if valid
		}
		logStored(ctx, key, exists, plan)
		return want, nil
	}
	return keyMaterial{}, fmt.Errorf("store certificates in secret %s: still conflicting after %d attempts", key, maxSecretAttempts)
}

// storeMaterial creates or updates the Secret with m. lostRace reports that
// another writer got there first (AlreadyExists or Conflict), which is not
// an error: the caller re-reads.
func storeMaterial(ctx context.Context, c client.Client, secret *corev1.Secret, exists bool, m keyMaterial) (lostRace bool, err error) {
	m.applyTo(secret)
	if exists {
		// Update carries the resourceVersion read above: optimistic concurrency.
		err = c.Update(ctx, secret)
	} else {
		err = c.Create(ctx, secret)
	}
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return true, nil
	}
	return false, err
}

func logStored(ctx context.Context, key client.ObjectKey, existed bool, plan renewal) {
	log := ctrl.LoggerFrom(ctx).WithValues("secret", key)
	switch {
	case !existed:
		log.Info("created webhook CA and serving certificate")
	case plan.needed():
		log.Info("renewed webhook certificates", "newCA", plan.CA, "reason", plan.Reason)
	default:
		log.Info("dropped expired CAs from the webhook CA bundle")
	}
}
