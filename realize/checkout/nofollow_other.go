//go:build !unix

package checkout

const NoFollow = 0
