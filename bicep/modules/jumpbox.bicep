// Optional: a Linux jumpbox without a public IP, reached only through Azure Bastion (Standard, native-client
// tunnelling), to prove private-only access and to deploy code when the function app's inbound is private.

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Name suffix shared by the resources of this deployment.')
param resourceToken string

@description('Jumpbox subnet.')
param jumpboxSubnetId string

@description('AzureBastionSubnet.')
param bastionSubnetId string

@description('Admin user name of the jumpbox.')
param adminUsername string = 'azureuser'

@description('SSH public key of the admin user (password authentication is disabled). An empty key fails validation here, before anything is created (scripts/preflight.sh checks it even earlier).')
@minLength(16)
param sshPublicKey string

@description('Encryption at host for the VM disks. Needs the subscription feature Microsoft.Compute/EncryptionAtHost to be registered (scripts/preflight.sh checks it).')
param encryptionAtHost bool = false

@description('VM size.')
param vmSize string = 'Standard_B2s'

resource bastionIp 'Microsoft.Network/publicIPAddresses@2025-05-01' = {
  name: 'pip-bastion-${resourceToken}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
  }
}

resource bastion 'Microsoft.Network/bastionHosts@2025-01-01' = {
  name: 'bas-${resourceToken}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    enableTunneling: true
    ipConfigurations: [
      {
        name: 'default'
        properties: {
          subnet: {
            id: bastionSubnetId
          }
          publicIPAddress: {
            id: bastionIp.id
          }
        }
      }
    ]
  }
}

resource nic 'Microsoft.Network/networkInterfaces@2025-05-01' = {
  name: 'nic-jump-${resourceToken}'
  location: location
  tags: tags
  properties: {
    enableIPForwarding: false
    ipConfigurations: [
      {
        name: 'ipconfig1'
        properties: {
          privateIPAllocationMethod: 'Dynamic'
          subnet: {
            id: jumpboxSubnetId
          }
        }
      }
    ]
  }
}

resource vm 'Microsoft.Compute/virtualMachines@2024-11-01' = {
  // checkov:skip=CKV_AZURE_50: extension operations stay allowed because platform-orchestrated patching (AutomaticByPlatform) needs them; no extension is installed by this template
  // checkov:skip=CKV_AZURE_97: encryption at host is the encryptionAtHost parameter (needs a subscription feature registration, checked by scripts/preflight.sh); managed disks are encrypted at rest with platform keys regardless
  // checkov:skip=CKV_AZURE_151: encryption at host is the encryptionAtHost parameter (subscription feature Microsoft.Compute/EncryptionAtHost); managed disks are encrypted at rest with platform keys regardless
  name: 'vm-jump-${resourceToken}'
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    hardwareProfile: {
      vmSize: vmSize
    }
    osProfile: {
      computerName: 'jumpbox'
      adminUsername: adminUsername
      // Platform-orchestrated patching (patchMode AutomaticByPlatform) runs through the VM guest agent's extension
      // handling, so extension operations stay allowed.
      allowExtensionOperations: true
      linuxConfiguration: {
        disablePasswordAuthentication: true
        provisionVMAgent: true
        ssh: {
          publicKeys: [
            {
              path: '/home/${adminUsername}/.ssh/authorized_keys'
              keyData: sshPublicKey
            }
          ]
        }
        patchSettings: {
          patchMode: 'AutomaticByPlatform'
          assessmentMode: 'AutomaticByPlatform'
        }
      }
    }
    securityProfile: {
      encryptionAtHost: encryptionAtHost
      securityType: 'TrustedLaunch'
      uefiSettings: {
        secureBootEnabled: true
        vTpmEnabled: true
      }
    }
    storageProfile: {
      imageReference: {
        publisher: 'Canonical'
        offer: 'ubuntu-24_04-lts'
        sku: 'server'
        version: 'latest'
      }
      osDisk: {
        createOption: 'FromImage'
        deleteOption: 'Delete'
        managedDisk: {
          storageAccountType: 'StandardSSD_LRS'
        }
      }
    }
    networkProfile: {
      networkInterfaces: [
        {
          id: nic.id
          properties: {
            deleteOption: 'Delete'
          }
        }
      ]
    }
  }
}

output vmName string = vm.name
output bastionName string = bastion.name
